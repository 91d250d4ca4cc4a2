"""Callbacks tied to a request's transaction: enqueue after it commits, clean up files if it
rolls back. The request session (``app.dependencies``) commits or rolls back through here."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

__all__ = ["after_commit", "on_rollback", "commit", "roll_back"]

_AFTER_COMMIT = "after_commit"
_ON_ROLLBACK = "on_rollback"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the request's transaction has committed (e.g. enqueue a job)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def on_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` if the request's transaction is rolled back (e.g. delete files)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(callback)


def commit(session: Session) -> None:
    """Commit, then run the after-commit callbacks; on failure roll back (and its callbacks)."""
    try:
        session.commit()
    except BaseException:
        roll_back(session)
        raise
    session.info.pop(_ON_ROLLBACK, None)
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()
    session.close()


def roll_back(session: Session) -> None:
    """Roll back and run the on-rollback callbacks, even when the rollback itself fails
    (the database went away: nothing was committed, so the files must go all the same)."""
    callbacks = session.info.pop(_ON_ROLLBACK, [])
    session.info.pop(_AFTER_COMMIT, None)
    try:
        session.rollback()
    finally:
        try:
            for callback in callbacks:
                callback()
        finally:
            session.close()
