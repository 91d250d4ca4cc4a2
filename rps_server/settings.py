"""The one settings object of the service, read from ``RPS_*`` environment variables.

Embedded default (nothing set): SQLite and artifacts under ``./data``, Dramatiq's in-memory
broker, auth off unless keys exist. Production: ``RPS_DATABASE_URL=postgresql+psycopg://…``,
``RPS_REDIS_URL=redis://…``, ``RPS_ENV=production`` (which refuses SQLite and refuses to
start without API keys).
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from representer.adapters.xgboost_checks import BoosterLimits

__all__ = ["Environment", "Settings", "get_settings", "parse_api_keys"]


LogFormat = Literal["text", "json"]


class Environment(str, Enum):
    """Where the service runs; production refuses insecure defaults."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


def parse_api_keys(raw: str | None) -> dict[str, str]:
    """Parse ``"tenant:key,tenant2:key2"`` into ``{key: tenant}``.

    Raises
    ------
    ValueError
        When an entry lacks the ``tenant:`` prefix or either side is empty.
    """
    keys: dict[str, str] = {}
    for entry in (raw or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        tenant, sep, key = entry.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise ValueError(f"RPS_API_KEYS entries must look like 'tenant:key', got {entry!r}")
        keys[key.strip()] = tenant.strip()
    return keys


class Settings(BaseSettings):
    """Service settings (env prefix ``RPS_``); validated once at start-up."""

    model_config = SettingsConfigDict(env_prefix="RPS_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Field(
        default=Path("./data"), description="Artifacts, SQLite file, temp uploads."
    )
    database_url: str | None = Field(default=None, description="Unset: sqlite under data_dir.")
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Database connections an API process keeps open; up to 10 more are opened "
        "at a peak and closed afterwards.",
    )
    redis_url: str | None = Field(
        default=None, description="Unset: in-memory broker, no result cache."
    )
    api_keys: str | None = Field(default=None, description="Comma list 'tenant:key'.")
    max_upload_bytes: int = Field(
        default=1024**3,
        gt=0,
        description="Per multipart part (.npy arrays, the booster): 1 GiB holds 10 million "
        "training rows of 25 float32 features.",
    )
    max_json_part_bytes: int = Field(
        default=256 * 1024**2,
        gt=0,
        description="Per JSON part of ids or records (parsed in memory at about 5x its size); "
        "10 million ids of 20 characters are 240 MB.",
    )
    max_spec_bytes: int = Field(
        default=4 * 1024**2,
        gt=0,
        description="The spec part (10,000 class names of 200 characters fit).",
    )
    max_multipart_parts: int = Field(
        default=16, ge=1, le=1000, description="Parts of one POST /models (at most 11 are used)."
    )
    max_explain_body_bytes: int = Field(
        default=32 * 1024**2,
        gt=0,
        description="A JSON request body (POST /explain, /explain/batch), refused with 413 "
        "before parsing: 1,000 rows of 1,000 numbers fit.",
    )
    key_cache_ttl_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long an API process trusts a resolved key and the key count; a "
        "revoked or deleted key stops working within this time.",
    )
    redis_namespace: str = Field(
        default="rps",
        min_length=1,
        max_length=100,
        description="Prefix of every Redis key (broker and cache).",
    )
    worker_heartbeat_timeout_ms: int = Field(default=60_000, gt=0)
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port on which `rps worker` serves Prometheus metrics (job outcomes and "
        "durations, Dramatiq message counts), summed over its processes; unset: none.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker metrics server binds (0.0.0.0 in containers).",
    )
    broker_maintenance_chance: int = Field(default=1_000, ge=0, le=1_000_000)
    job_time_limit_ms: int = Field(default=24 * 3600 * 1000, gt=0)
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Tries of one job whose worker dies (killed, out of memory) before the "
        "job fails with precompute-abandoned instead of killing another worker.",
    )
    job_sweep_interval_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often each worker sweeps the jobs table: sends jobs stored while the "
        "broker was down, and hands jobs of silent workers to others.",
    )
    job_resend_after_s: float = Field(
        default=900.0,
        gt=0,
        description="A job still queued this long after its message was sent is sent again "
        "(a broker that lost its queue); duplicates are skipped.",
    )
    explain_cache_ttl_s: int = Field(default=600, ge=0)
    model_cache_size: int = Field(default=8, ge=1)
    concurrent_queries: int = Field(
        default=1,
        ge=1,
        description="Engine scorings run at once per API process; each uses RPS_QUERY_THREADS threads.",
    )
    query_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="BLAS and PyTorch threads of an engine pass in an API process started by "
        "`rps serve` (0: the CPUs it may use, divided among RPS_CONCURRENT_QUERIES passes).",
    )
    batch_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="How long an explain request waits for others to share its pass (0: only "
        "requests that arrive while a pass runs are combined).",
    )
    explain_queue_size: int = Field(
        default=256,
        ge=1,
        description="Explain requests allowed to wait for a pass per API process; beyond it 429.",
    )
    upload_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="Time a POST /models body may take to arrive in full; beyond it 408.",
    )
    upload_idle_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Time a POST /models body may send nothing; beyond it 408.",
    )
    max_concurrent_uploads: int = Field(
        default=8,
        ge=1,
        description="POST /models bodies received at once per API process; beyond it 429.",
    )
    leftover_grace_s: float = Field(
        default=3600.0,
        gt=0,
        description="Temp uploads and model folders without a model row untouched this long "
        "are removed by the API's sweep (at start and every half of it, at most 10 minutes).",
    )
    min_free_disk_mb: int = Field(
        default=256,
        ge=0,
        description="Free space the data directory must keep: below it /readyz is 503 and "
        "uploads are refused with 507 (0: no check).",
    )
    booster_max_nodes: int = Field(
        default=2_097_152,
        ge=1,
        description="Nodes of all trees of an XGBoost booster together (largest documented "
        "booster: 2,000 trees of depth 9); more is a 422 before XGBoost reads the file.",
    )
    booster_max_depth: int = Field(
        default=64, ge=1, le=100_000, description="Deepest root-to-leaf path of a booster tree."
    )
    device: str = Field(default="cpu", description="cpu | cuda | cuda:N for the precompute.")
    label_refit_min_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds the K-fold head refits behind the out-of-fold label rankings may "
        "always take.",
    )
    label_refit_share: float = Field(
        default=0.5,
        ge=0,
        description="Beyond RPS_LABEL_REFIT_MIN_S, the refits may take this share of the time the "
        "methods' precompute took; estimated over it, the out-of-fold rankings are skipped.",
    )
    memory_budget_bytes: int = Field(
        default=8 * 1024**3,
        gt=0,
        description="Ceiling on what one method's Hessian may hold; a spec may lower it, not "
        "raise it, and a head no solver can serve within it is refused at registration.",
    )
    log_level: str = Field(default="INFO", description="DEBUG | INFO | WARNING | ERROR.")
    log_format: LogFormat = Field(
        default="text",
        description="text (for people) or json (one object a line, with request, job and model "
        "ids, for log collectors).",
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: str | None) -> str | None:
        parse_api_keys(value)
        return value

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.env is Environment.PRODUCTION and self.resolved_database_url.startswith("sqlite"):
            raise ValueError(
                "RPS_ENV=production refuses SQLite: set RPS_DATABASE_URL to PostgreSQL"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/rps.sqlite3``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rps.sqlite3').resolve()}"

    @property
    def env_api_keys(self) -> dict[str, str]:
        """Keys configured through ``RPS_API_KEYS``, as ``{key: tenant}``."""
        return parse_api_keys(self.api_keys)

    @property
    def booster_limits(self) -> BoosterLimits:
        """The structural limits every uploaded or stored booster is checked against."""
        from representer.adapters.xgboost_checks import BoosterLimits

        return BoosterLimits(max_nodes=self.booster_max_nodes, max_depth=self.booster_max_depth)

    @property
    def artifact_dir(self) -> Path:
        """Root of the artifact store."""
        return self.data_dir / "artifacts"

    @property
    def upload_tmp_dir(self) -> Path:
        """Where multipart parts are streamed before validation."""
        return self.data_dir / "tmp"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
