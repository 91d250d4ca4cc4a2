"""Sweep what crashes leave on disk: temporary upload folders, model folders without a
model row, and deleted models' folders in the trash.

Everything younger than the grace period is left alone: an upload still streaming, or a
registration whose files are stored but whose row is not committed yet, looks the same.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models_store.artifacts import TRASH_GRACE_S, ArtifactStore
from models_store.tables import Model

__all__ = ["LeftoverSweep", "sweep_leftovers", "newest_mtime"]

logger = logging.getLogger(__name__)
ID_BATCH = 500


@dataclass
class LeftoverSweep:
    """What one sweep removed, and how many bytes that freed."""

    temp_uploads: list[str] = field(default_factory=list)
    orphan_models: list[str] = field(default_factory=list)
    trash: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    @property
    def removed(self) -> int:
        return len(self.temp_uploads) + len(self.orphan_models) + len(self.trash)


def newest_mtime(path: Path) -> float:
    """The latest modification time of ``path`` or anything under it (0 if it vanished)."""
    try:
        newest = path.stat().st_mtime
        for child in path.rglob("*"):
            newest = max(newest, child.lstat().st_mtime)
    except FileNotFoundError:
        return 0.0
    return newest


def _size(path: Path) -> int:
    return sum(child.lstat().st_size for child in path.rglob("*") if child.is_file())


def _remove(path: Path, sweep: LeftoverSweep, bucket: list[str]) -> None:
    try:
        size = _size(path)
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as error:  # read-only, busy: try again at the next sweep
        logger.warning("could not remove leftover %s: %s", path, error)
        return
    sweep.freed_bytes += size
    bucket.append(path.name)


def _known_model_ids(sessions: sessionmaker[Session], model_ids: list[str]) -> set[str]:
    known: set[str] = set()
    with sessions() as session:
        for start in range(0, len(model_ids), ID_BATCH):
            batch = model_ids[start : start + ID_BATCH]
            known.update(session.scalars(select(Model.id).where(Model.id.in_(batch))).all())
    return known


def sweep_leftovers(
    store: ArtifactStore,
    upload_tmp_dir: Path,
    sessions: sessionmaker[Session],
    *,
    grace_s: float,
    now: float | None = None,
) -> LeftoverSweep:
    """Remove temp uploads and orphan model folders untouched for ``grace_s``, and trash.

    The database decides what is an orphan; if it cannot be asked, model folders are left.
    """
    now = time.time() if now is None else now
    sweep = LeftoverSweep()
    if upload_tmp_dir.is_dir():
        for folder in upload_tmp_dir.iterdir():
            if now - newest_mtime(folder) > grace_s:
                _remove(folder, sweep, sweep.temp_uploads)
    if store.trash_dir.is_dir():
        for folder in store.trash_dir.iterdir():
            if now - store.retired_at(folder) > TRASH_GRACE_S:
                _remove(folder, sweep, sweep.trash)
    models_dir = store.root / "models"
    if models_dir.is_dir():
        old = [d for d in models_dir.iterdir() if now - newest_mtime(d) > grace_s]
        try:
            known = _known_model_ids(sessions, [d.name for d in old])
        except Exception as error:  # the database is away: orphans wait for the next sweep
            logger.warning("leftover sweep skipped model folders: %s", error)
            known = {d.name for d in old}
        for folder in old:
            if folder.name not in known:
                _remove(folder, sweep, sweep.orphan_models)
    if sweep.removed:
        logger.info(
            "leftover sweep: removed %d temp upload(s), %d orphan model folder(s), %d deleted "
            "model folder(s); %.1f MB freed",
            len(sweep.temp_uploads),
            len(sweep.orphan_models),
            len(sweep.trash),
            sweep.freed_bytes / 1e6,
        )
    return sweep
