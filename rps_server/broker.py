"""The Dramatiq broker, chosen by settings, and the by-name enqueue the API uses.

``RPS_REDIS_URL`` unset gives a ``StubBroker`` (in-memory, for the embedded server and
tests); ``redis://…`` a ``RedisBroker`` whose heartbeat timeout and maintenance chance come
from settings, so a killed worker's messages are requeued within seconds when asked.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from rps_server.settings import Settings, get_settings

__all__ = [
    "GPU_QUEUE",
    "DEFAULT_QUEUE",
    "PRECOMPUTE_ACTOR",
    "QUEUES",
    "make_broker",
    "setup_broker",
    "precompute_message",
    "enqueue_precompute",
]

DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"
QUEUES = (DEFAULT_QUEUE, GPU_QUEUE)
PRECOMPUTE_ACTOR = "precompute_model"


def make_broker(settings: Settings | None = None) -> dramatiq.Broker:
    """A new broker for ``settings`` with both queues declared."""
    settings = settings or get_settings()
    if settings.redis_url:
        broker: dramatiq.Broker = RedisBroker(
            url=settings.redis_url,
            namespace=settings.redis_namespace,
            heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
            maintenance_chance=settings.broker_maintenance_chance,
        )
    else:
        broker = StubBroker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def setup_broker(settings: Settings | None = None) -> dramatiq.Broker:
    """Create the broker for ``settings`` and make it Dramatiq's global broker."""
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    return broker


def precompute_message(job_id: str, *, queue: str = DEFAULT_QUEUE) -> dramatiq.Message:
    """The message that asks a worker to run job ``job_id`` (by actor name, no import)."""
    return dramatiq.Message(
        queue_name=queue,
        actor_name=PRECOMPUTE_ACTOR,
        args=(job_id,),
        kwargs={},
        options={},
    )


def enqueue_precompute(broker: dramatiq.Broker, job_id: str, *, queue: str = DEFAULT_QUEUE) -> None:
    """Send the precompute message for ``job_id``; call only after the job row committed."""
    broker.enqueue(precompute_message(job_id, queue=queue))
