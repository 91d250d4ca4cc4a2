"""models_store: persistence of the service (tables, migrations, artifact store)."""

from models_store.artifacts import ArtifactStore
from models_store.db import is_sqlite, make_engine, make_sessionmaker
from models_store.faults import is_descriptor_error, is_storage_error
from models_store.files import ModelFiles, ResultFiles
from models_store.leftovers import LeftoverSweep, sweep_leftovers
from models_store.migrate import upgrade
from models_store.tables import (
    ApiKey,
    Base,
    Job,
    JobStatus,
    Model,
    ModelKind,
    ModelStatus,
    Review,
    ReviewDecision,
    Score,
    TestPoint,
    TrainPoint,
    utcnow,
)

__all__ = [
    "ApiKey",
    "ArtifactStore",
    "Base",
    "Job",
    "JobStatus",
    "LeftoverSweep",
    "Model",
    "ModelFiles",
    "ModelKind",
    "ModelStatus",
    "ResultFiles",
    "Review",
    "ReviewDecision",
    "Score",
    "TestPoint",
    "TrainPoint",
    "is_descriptor_error",
    "is_sqlite",
    "is_storage_error",
    "make_engine",
    "make_sessionmaker",
    "sweep_leftovers",
    "upgrade",
    "utcnow",
]
