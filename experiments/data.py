"""Loading the three data sets from ``../shared/data`` into one common shape.

Every loader returns a ``TaskData``: model inputs, labels and a human-readable record
per row (sent to the service as ``train_records`` / ``test_records``).
"""

from __future__ import annotations

import base64
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.settings import DATA_DIR, RunSettings, TaskName

__all__ = ["TaskData", "load_task", "tokenize", "SUBSET_SEED"]

SUBSET_SEED = 12345
"""Seed of the (stratified) subsets drawn in quick mode; fixed so runs compare."""
IMDB_MAX_TOKENS = 200
"""Reviews are cut to their first tokens (Bi-LSTM cost grows with length)."""
IMDB_MAX_VOCAB = 20000
"""Vocabulary size cap (most frequent training tokens; 0 = padding, 1 = unknown)."""
IMDB_MIN_COUNT = 3
"""Tokens seen fewer times in training are unknown (rare words only help memorising)."""
RECORD_WORDS = 40
"""Words of a review kept in its record."""
_TOKEN_PATTERN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


@dataclass(frozen=True)
class TaskData:
    """Inputs, labels and records of one task.

    Attributes
    ----------
    train_inputs, test_inputs : ndarray
        German: float64 (n, 61) one-hot rows; CIFAR: float32 (n, 3, 32, 32) normalised
        images; IMDB: int64 (n, IMDB_MAX_TOKENS) token ids, 0-padded.
    train_labels, test_labels : ndarray of shape (n,), int64
        Clean labels in {0, 1}.
    train_records, test_records : list of dict
        What a person reads beside a representer point.
    class_names : tuple of str
    """

    name: TaskName
    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    train_records: list[dict]
    test_records: list[dict]
    class_names: tuple[str, ...]
    vocab_size: int = 0

    @property
    def n_train(self) -> int:
        return len(self.train_labels)


def _stratified_subset(labels: np.ndarray, size: int | None, *, seed: int) -> np.ndarray:
    """Indices (size,) of a class-balanced-in-proportion random subset, sorted."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        share = int(round(size * len(members) / len(labels)))
        picked.append(rng.choice(members, size=share, replace=False))
    return np.sort(np.concatenate(picked))


def _german(settings: RunSettings, data_dir: Path) -> TaskData:
    folder = data_dir / "german_credit"
    translated = pd.read_csv(folder / "german_data_translated.csv").set_index("id")
    parts = {}
    for split in ("train", "test"):
        features = pd.read_csv(folder / f"X_{split}_clean.csv", index_col=0)
        labels = pd.read_csv(folder / f"Y_{split}_clean.csv", index_col=0)["classification"]
        rows = translated.loc[features["id"].to_numpy()]
        records = [
            {
                "id": int(row_id),
                **{key: _clean(value) for key, value in row.items() if key != "classification"},
            }
            for row_id, row in rows.iterrows()
        ]
        parts[split] = (
            features.drop(columns="id").to_numpy(np.float64),
            labels.to_numpy(np.int64),
            records,
        )
    return TaskData(
        name=TaskName.GERMAN,
        train_inputs=parts["train"][0],
        train_labels=parts["train"][1],
        train_records=parts["train"][2],
        test_inputs=parts["test"][0],
        test_labels=parts["test"][1],
        test_records=parts["test"][2],
        class_names=("bad", "good"),
    )


def _clean(value: object) -> object:
    if isinstance(value, str):
        return value.strip()
    return value.item() if hasattr(value, "item") else value


def _png_data_url(image: np.ndarray) -> str:
    """A (32, 32, 3) uint8 image as a ``data:image/png;base64,...`` string."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
_CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


def _cifar_split(
    path: Path, size: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    with np.load(path) as archive:
        images, labels = archive["images"], archive["labels"].astype(np.int64)
    keep = _stratified_subset(labels, size, seed=seed)
    images, labels = images[keep], labels[keep]
    normalised = ((images.astype(np.float32) / 255.0 - _CIFAR_MEAN) / _CIFAR_STD).transpose(
        0, 3, 1, 2
    )
    records = [
        {"index": int(index), "image": _png_data_url(image)}
        for index, image in zip(keep, images, strict=False)
    ]
    return np.ascontiguousarray(normalised), labels, records


def _cifar(settings: RunSettings, data_dir: Path) -> TaskData:
    folder = data_dir / "cifar10_car_horse"
    train = _cifar_split(folder / "train.npz", settings.n_train, SUBSET_SEED)
    test = _cifar_split(folder / "test.npz", settings.n_test, SUBSET_SEED + 1)
    return TaskData(
        name=TaskName.CIFAR,
        train_inputs=train[0],
        train_labels=train[1],
        train_records=train[2],
        test_inputs=test[0],
        test_labels=test[1],
        test_records=test[2],
        class_names=("automobile", "horse"),
    )


def tokenize(text: str) -> list[str]:
    """Lower-case regex tokens; ``<br />`` tags removed (the paper used spaCy)."""
    return _TOKEN_PATTERN.findall(text.lower().replace("<br />", " "))


def _encode(token_lists: list[list[str]], vocab: dict[str, int]) -> np.ndarray:
    """Token ids, shape (n, IMDB_MAX_TOKENS) int64, 0-padded at the end, unknown = 1."""
    encoded = np.zeros((len(token_lists), IMDB_MAX_TOKENS), dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        ids = [vocab.get(token, 1) for token in tokens[:IMDB_MAX_TOKENS]]
        encoded[row, : len(ids)] = ids
    return encoded


def _imdb(settings: RunSettings, data_dir: Path) -> TaskData:
    folder = data_dir / "imdb"
    small = (
        settings.n_train is not None
        and settings.n_train <= 2500
        and (settings.n_test or 25000) <= 1000
    )
    train = pd.read_csv(folder / ("imdb_train_small2500.csv.gz" if small else "imdb_train.csv.gz"))
    test = pd.read_csv(folder / ("imdb_test_small1000.csv.gz" if small else "imdb_test.csv.gz"))
    train = train.iloc[
        _stratified_subset(train["label"].to_numpy(), settings.n_train, seed=SUBSET_SEED)
    ]
    test = test.iloc[
        _stratified_subset(test["label"].to_numpy(), settings.n_test, seed=SUBSET_SEED + 1)
    ]
    train_tokens = [tokenize(text) for text in train["text"]]
    counts = Counter(token for tokens in train_tokens for token in tokens)
    frequent = [
        token for token, count in counts.most_common(IMDB_MAX_VOCAB - 2) if count >= IMDB_MIN_COUNT
    ]
    vocab = {token: index + 2 for index, token in enumerate(frequent)}
    test_tokens = [tokenize(text) for text in test["text"]]

    def records(frame: pd.DataFrame) -> list[dict]:
        return [
            {
                "id": int(row.id),
                "rating": int(row.rating),
                "text": " ".join(row.text.replace("<br />", " ").split()[:RECORD_WORDS]),
            }
            for row in frame.itertuples()
        ]

    return TaskData(
        name=TaskName.IMDB,
        train_inputs=_encode(train_tokens, vocab),
        train_labels=train["label"].to_numpy(np.int64),
        test_inputs=_encode(test_tokens, vocab),
        test_labels=test["label"].to_numpy(np.int64),
        train_records=records(train),
        test_records=records(test),
        class_names=("negative", "positive"),
        vocab_size=len(vocab) + 2,
    )


def load_task(settings: RunSettings, *, data_dir: Path = DATA_DIR) -> TaskData:
    """Load the data of ``settings.task`` at the sizes of ``settings.mode``."""
    loaders = {TaskName.GERMAN: _german, TaskName.CIFAR: _cifar, TaskName.IMDB: _imdb}
    return loaders[settings.task](settings, data_dir)
