"""The module Dramatiq's own command line imports in each worker process (``rps worker
--processes N`` runs ``dramatiq workers.dramatiq_app``): the broker of the environment's
settings with the precompute actor declared, logging as the settings say, and Dramatiq's
Prometheus middleware when ``RPS_WORKER_METRICS_PORT`` is set.

Importing it has effects (it sets Dramatiq's global broker); nothing else imports it.
"""

from __future__ import annotations

from models_store import make_engine, make_sessionmaker
from rps_server.broker import setup_broker
from rps_server.logs import configure_logging
from rps_server.settings import get_settings
from workers.actors import declare_actors
from workers.outbox import start_job_sweeper

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)
broker = setup_broker(settings)
if settings.worker_metrics_port is not None:
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
declare_actors(broker, settings=settings)
# each process sweeps the jobs table (SKIP LOCKED keeps two sweeps from sending one job twice)
sweeper = start_job_sweeper(
    settings, broker, make_sessionmaker(make_engine(settings.resolved_database_url))
)
