"""The artifact store: a model's arrays as files, written atomically, read memory-mapped.

Layout under the root::

    models/<model_id>/inputs/            what the user uploaded (validated)
    models/<model_id>/results/<run>/     one precompute run; published by a DB transaction
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArtifactStore"]


class ArtifactStore:
    """Files of every model under one root directory (a local disk or a shared volume)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def inputs_dir(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "inputs"

    def new_result_dir(self, model_id: str) -> Path:
        """A fresh, empty directory for one precompute run (never reused)."""
        directory = self.model_dir(model_id) / "results" / uuid.uuid4().hex
        directory.mkdir(parents=True)
        return directory

    def save_array(self, path: Path, array: np.ndarray) -> None:
        """Write ``array`` as ``.npy`` atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)

    def save_json(self, path: Path, value: Any) -> None:
        """Write ``value`` as JSON atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)

    def move_in(self, source: Path, path: Path) -> None:
        """Move an already-written file (e.g. a validated upload) into the store."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, path)
        except OSError:  # another filesystem
            shutil.copyfile(source, path)
            os.unlink(source)

    def link_or_copy(self, source: Path, path: Path) -> None:
        """Make ``path`` hold ``source``'s bytes (hard link when possible)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)

    @staticmethod
    def load_array(path: Path, *, mmap: bool = True) -> np.ndarray:
        """Open a stored array, memory-mapped read-only by default."""
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)

    @staticmethod
    def load_json(path: Path) -> Any:
        return json.loads(Path(path).read_text())

    def delete_model(self, model_id: str) -> None:
        """Remove every file of ``model_id``."""
        shutil.rmtree(self.model_dir(model_id), ignore_errors=True)

    def delete_other_results(self, model_id: str, *, keep: Path) -> None:
        """Remove result runs of ``model_id`` other than ``keep`` (after a publish)."""
        results = self.model_dir(model_id) / "results"
        for run in results.iterdir() if results.exists() else ():
            if run.resolve() != Path(keep).resolve():
                shutil.rmtree(run, ignore_errors=True)

    def check(self) -> None:
        """Raise ``OSError`` unless the root is writable (used by ``/readyz``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
