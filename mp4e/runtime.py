"""The objects a process shares: settings, database, storage, event bus, limiter, job queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis

from mp4e.auth import Principal
from mp4e.cache import TTLCache
from mp4e.db import Database, get_database
from mp4e.events import EventBus, MemoryEventBus, RedisEventBus
from mp4e.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from mp4e.settings import Settings
from mp4e.storage import Storage

logger = logging.getLogger(__name__)


class JobQueue(Protocol):
    def enqueue(self, job_id: str) -> None: ...


INVALIDATION_CHANNEL = "invalidate"
PRINCIPAL_TTL_S = 5.0
VIDEO_VIEW_TTL_S = 2.0


@dataclass
class Runtime:
    settings: Settings
    database: Database
    storage: Storage
    events: EventBus
    limiter: RateLimiter
    queue: JobQueue | None = field(default=None)
    principals: TTLCache[str, Principal] = field(default_factory=lambda: TTLCache(PRINCIPAL_TTL_S))
    video_views: TTLCache[str, tuple[str, bytes]] = field(
        default_factory=lambda: TTLCache(VIDEO_VIEW_TTL_S)
    )

    view_generation: int = 0

    def notify_changed(self, video_ids: set[str]) -> None:
        """Drop cached views of changed videos here and in every process on the event bus."""
        self.view_generation += 1
        for video_id in video_ids:
            self.video_views.discard(video_id)
        try:
            self.events.publish(INVALIDATION_CHANNEL, {"videos": sorted(video_ids)})
        except Exception:
            logger.warning("Publishing a cache invalidation failed", exc_info=True)

    def apply_invalidation(self, event: dict[str, object]) -> None:
        self.view_generation += 1
        video_ids = event.get("videos")
        if isinstance(video_ids, list):
            for video_id in video_ids:
                self.video_views.discard(str(video_id))
        if event.get("keys"):
            self.principals.clear()

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
        events = RedisEventBus(settings.redis_url, settings.redis_namespace)
        limiter = RedisRateLimiter(
            Redis.from_url(settings.redis_url),
            settings.rate_limit_requests,
            settings.rate_limit_window_s,
            settings.redis_namespace,
        )
    else:
        events = MemoryEventBus()
        limiter = MemoryRateLimiter(settings.rate_limit_requests, settings.rate_limit_window_s)
    runtime = Runtime(
        settings=settings,
        database=get_database(settings),
        storage=storage,
        events=events,
        limiter=limiter,
    )
    runtime.database.change_listeners.append(runtime.notify_changed)
    return runtime
