"""The artifact store: a model's arrays as files, written atomically, read memory-mapped.

Layout under the root::

    models/<model_id>/inputs/            what the user uploaded (validated)
    models/<model_id>/results/<run>/     one precompute run; published by a DB transaction
    trash/<model_id>.<t>.<hex>/             a deleted model's folder, moved aside before its rows
                                         are deleted and removed once the deletion committed
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from models_store.faults import is_storage_error

__all__ = ["ArtifactStore", "TRASH_GRACE_S"]

TRASH_GRACE_S = 60.0
"""A retired folder moves back if its deletion does not commit; sweep it only after this."""


@contextmanager
def _removed_on_error(tmp: Path) -> Iterator[None]:
    """Remove the half-written ``tmp`` if writing fails. numpy reports a full disk as a
    short write (an ``OSError`` without errno): that is re-raised as ``ENOSPC``."""
    try:
        yield
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is None and is_storage_error(error):
            raise OSError(errno.ENOSPC, f"No space left on device ({error})") from error
        raise


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
        with _removed_on_error(tmp), open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)

    def save_json(self, path: Path, value: Any) -> None:
        """Write ``value`` as JSON atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with _removed_on_error(tmp):
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

    def delete_other_results(self, model_id: str, *, keep: Path | None) -> None:
        """Remove result runs of ``model_id`` other than ``keep`` (after a publish or a
        failure; ``None`` removes every run)."""
        results = self.model_dir(model_id) / "results"
        kept = Path(keep).resolve() if keep is not None else None
        for run in results.iterdir() if results.exists() else ():
            if run.resolve() != kept:
                shutil.rmtree(run, ignore_errors=True)

    @property
    def trash_dir(self) -> Path:
        return self.root / "trash"

    def retire_model(self, model_id: str) -> Path | None:
        """Move the folder of ``model_id`` aside (one rename); ``None`` if it has none.

        Raises ``OSError`` when the store refuses (read-only, ...): then nothing moved.
        """
        source = self.model_dir(model_id)
        if not source.exists():
            return None
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        retired = self.trash_dir / f"{model_id}.{int(time.time())}.{uuid.uuid4().hex[:8]}"
        os.rename(source, retired)
        return retired

    @staticmethod
    def retired_at(retired: Path) -> float:
        """When ``retire_model`` moved the folder (from its name; 0 for a foreign name)."""
        parts = retired.name.split(".")
        return float(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0.0

    def restore_model(self, model_id: str, retired: Path) -> None:
        """Undo ``retire_model`` (the deletion did not commit)."""
        os.rename(retired, self.model_dir(model_id))

    @staticmethod
    def purge(path: Path) -> None:
        """Remove a retired folder; what cannot be removed now is swept later."""
        shutil.rmtree(path, ignore_errors=True)

    def free_bytes(self) -> int:
        """Free bytes on the file system of the root, for an unprivileged writer."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def check(self) -> None:
        """Raise ``OSError`` unless the root is writable (used by ``/readyz``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
