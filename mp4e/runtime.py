"""The objects a process shares: settings, database, storage, event bus, limiter, job queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis

from mp4e.db import Database, get_database
from mp4e.events import EventBus, MemoryEventBus, RedisEventBus
from mp4e.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from mp4e.settings import Settings
from mp4e.storage import Storage

logger = logging.getLogger(__name__)


class JobQueue(Protocol):
    def enqueue(self, job_id: str) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    database: Database
    storage: Storage
    events: EventBus
    limiter: RateLimiter
    queue: JobQueue | None = field(default=None)

    def require_queue(self) -> JobQueue:
        if self.queue is None:
            raise RuntimeError("No job queue is configured in this process.")
        return self.queue

    async def close(self) -> None:
        await self.limiter.close()
        await self.events.close()


def build_runtime(settings: Settings) -> Runtime:
    """Create the shared objects for `settings`; the job queue is attached by the caller."""
    storage = Storage(settings)
    storage.ensure_dirs()
    events: EventBus
    limiter: RateLimiter
    if settings.redis_url:
        events = RedisEventBus(settings.redis_url)
        limiter = RedisRateLimiter(
            Redis.from_url(settings.redis_url),
            settings.rate_limit_requests,
            settings.rate_limit_window_s,
        )
    else:
        events = MemoryEventBus()
        limiter = MemoryRateLimiter(settings.rate_limit_requests, settings.rate_limit_window_s)
    return Runtime(
        settings=settings,
        database=get_database(settings),
        storage=storage,
        events=events,
        limiter=limiter,
    )
