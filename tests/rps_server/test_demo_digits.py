"""The image demo's data: PNG data URLs that decode to the digits, a fixed split, flipped labels."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from rps_server.demo_digits import load_digits_data, png_data_url

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_greyscale_png(url: str) -> np.ndarray:
    """Pixels (h, w) uint8 of an 8-bit greyscale PNG data URL with filter 0 rows (checks CRCs)."""
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    data = base64.b64decode(url[len(prefix) :])
    assert data[:8] == PNG_SIGNATURE
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 0) and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(
        height, width + 1
    )
    assert np.all(rows[:, 0] == 0)
    return rows[:, 1:]


def test_png_data_url_round_trips():
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7)).astype(np.uint8)
    np.testing.assert_array_equal(decode_greyscale_png(png_data_url(pixels)), pixels)


def test_digit_records_are_the_images_and_some_labels_are_flipped():
    from sklearn.datasets import load_digits

    data = load_digits_data()
    original = load_digits()
    row = int(data.test_ids[0])
    ink = 1.0 - decode_greyscale_png(data.test_records[0]) / 255.0
    np.testing.assert_allclose(ink * 16.0, original.images[row], atol=16.0 / 255.0)
    np.testing.assert_allclose(data.test_features[0], original.data[row] / 16.0)
    train_rows = np.array([int(i) for i in data.train_ids])
    changed = {str(r) for r in train_rows[data.train_labels != original.target[train_rows]]}
    assert changed == set(data.flipped) and 0 < len(changed) < 0.05 * len(train_rows)
    assert not set(data.train_ids) & set(data.test_ids)
