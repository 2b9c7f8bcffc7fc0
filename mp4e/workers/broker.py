"""Dramatiq broker setup: Redis in production, an in-process broker and worker by default."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from mp4e.settings import Settings

logger = logging.getLogger(__name__)

QUEUE_NAME = "mp4e"
ACTOR_NAME = "run_job"


class DramatiqJobQueue:
    """Sends job ids to the `run_job` actor."""

    def __init__(self, actor: dramatiq.Actor[Any, Any]) -> None:
        self.actor = actor

    def enqueue(self, job_id: str) -> None:
        self.actor.send(job_id)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """Create the broker for `settings` and make it Dramatiq's global broker."""
    broker: dramatiq.Broker
    if settings.redis_url:
        broker = RedisBroker(
            url=settings.redis_url, namespace=f"{settings.redis_namespace}-dramatiq"
        )
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    return broker


def declare_actor(broker: dramatiq.Broker) -> dramatiq.Actor[Any, Any]:
    """Declare the job actor on `broker`. Retries are off: leases decide requeueing."""
    from mp4e.workers.runner import run_job_message

    return dramatiq.Actor(
        run_job_message,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={"max_retries": 0, "time_limit": 24 * 3600 * 1000},
    )
