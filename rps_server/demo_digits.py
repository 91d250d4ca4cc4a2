"""The image demo: scikit-learn's bundled 8×8 digits with a softmax head on the pixels.

No download: ``sklearn.datasets.load_digits`` ships with scikit-learn. Each record is the
digit as a PNG ``data:`` URL (encoded here with zlib, no imaging library), so the viewer
shows thumbnails. A few training labels are flipped on purpose (fixed seed), so the
suspicious-labels page has real mistakes to find.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIGITS_NAME",
    "DIGITS_OPTIONS",
    "DigitsData",
    "load_digits_data",
    "fit_digits_head",
    "png_data_url",
]

DIGITS_NAME = "demo-digits"
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.25
DIGITS_FLIPPED_FRACTION = 0.03
PIXEL_MAX = 16.0  # load_digits' pixel values are 0..16
DIGITS_DAMPING = 1e-3
"""Some border pixels are 0 in every image, so the Hessian is singular without damping."""
DIGITS_OPTIONS = {"lje": {"damping": DIGITS_DAMPING}, "influence": {"damping": DIGITS_DAMPING}}
"""The engine options the demo registers the digits with (``register_linear(**DIGITS_OPTIONS)``)."""


def png_data_url(pixels: np.ndarray) -> str:
    """An 8-bit greyscale PNG of ``pixels`` (h, w) uint8, as a ``data:image/png`` URL."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    scanlines = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter 0 per row
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines, 9))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class DigitsData:
    """The digits split of the image demo.

    Attributes
    ----------
    train_features : ndarray of shape (n, 64), float64, pixels scaled to [0, 1]
    train_labels : ndarray of shape (n,), int64, with ``flipped`` rows mislabelled
    test_features : ndarray of shape (m, 64), float64
    test_labels : ndarray of shape (m,), int64
    train_ids, test_ids : list of str (the rows' indices in the data set)
    train_records, test_records : list of str (PNG data URLs, dark ink on white)
    flipped : list of str, the train ids whose label was changed
    """

    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    train_ids: list[str]
    test_ids: list[str]
    train_records: list[str]
    test_records: list[str]
    flipped: list[str]

    @property
    def class_names(self) -> list[str]:
        return [str(digit) for digit in range(10)]


def _records(images: np.ndarray) -> list[str]:
    ink = np.clip(images / PIXEL_MAX, 0.0, 1.0)
    return [png_data_url(np.round(255 * (1.0 - image)).astype(np.uint8)) for image in ink]


def load_digits_data(*, seed: int = DIGITS_SEED) -> DigitsData:
    """A fixed stratified split of ``load_digits`` with a few training labels flipped."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    dataset = load_digits()
    rows = np.arange(len(dataset.target))
    train_rows, test_rows = train_test_split(
        rows, test_size=DIGITS_TEST_FRACTION, random_state=seed, stratify=dataset.target
    )
    features = dataset.data.astype(np.float64) / PIXEL_MAX
    labels = dataset.target.astype(np.int64)
    train_labels = labels[train_rows].copy()
    rng = np.random.default_rng(seed)
    flip = rng.choice(
        len(train_rows), size=int(DIGITS_FLIPPED_FRACTION * len(train_rows)), replace=False
    )
    train_labels[flip] = (train_labels[flip] + rng.integers(1, 10, size=len(flip))) % 10
    return DigitsData(
        train_features=features[train_rows],
        train_labels=train_labels,
        test_features=features[test_rows],
        test_labels=labels[test_rows],
        train_ids=[str(row) for row in train_rows],
        test_ids=[str(row) for row in test_rows],
        train_records=_records(dataset.images[train_rows]),
        test_records=_records(dataset.images[test_rows]),
        flipped=[str(train_rows[index]) for index in sorted(flip)],
    )


def fit_digits_head(data: DigitsData) -> tuple[np.ndarray, np.ndarray]:
    """A softmax head on the pixels: weights (10, 64) and bias (10,), float64."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=1.0, max_iter=500)
    head.fit(data.train_features, data.train_labels)
    return head.coef_.astype(np.float64), head.intercept_.astype(np.float64)
