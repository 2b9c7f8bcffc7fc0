"""Publish/subscribe for job progress: in memory by default, Redis across processes.

Publishers may run in worker threads or other processes; subscribers are asyncio consumers
(GraphQL subscriptions). A subscriber's resources are released when its iterator is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import redis
from redis.asyncio import Redis

logger = logging.getLogger(__name__)


class EventBus(Protocol):
    def publish(self, channel: str, event: dict[str, Any]) -> None: ...

    def subscribe(self, channel: str) -> AsyncGenerator[dict[str, Any], None]: ...

    def subscriber_count(self) -> int: ...

    async def close(self) -> None: ...


class MemoryEventBus:
    """Delivers events to subscribers of this process. `publish` is thread-safe."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]]]
        self._subscribers = {}
        self._lock = threading.Lock()

    def publish(self, channel: str, event: dict[str, Any]) -> None:
        with self._lock:
            targets = list(self._subscribers.get(channel, ()))
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:
                logger.debug("Dropped an event for a closed event loop on %s", channel)

    async def subscribe(self, channel: str) -> AsyncGenerator[dict[str, Any], None]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.setdefault(channel, set()).add(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            with self._lock:
                subscribers = self._subscribers.get(channel)
                if subscribers is not None:
                    subscribers.discard(entry)
                    if not subscribers:
                        del self._subscribers[channel]

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._subscribers.values())

    async def close(self) -> None:
        return None


class RedisEventBus:
    """Delivers events through Redis pub/sub, so workers in other processes reach clients."""

    def __init__(self, url: str, namespace: str = "mp4e") -> None:
        self.url = url
        self.prefix = f"{namespace}:events:"
        self._sync = redis.Redis.from_url(url)
        self._active = 0
        self._lock = threading.Lock()

    def publish(self, channel: str, event: dict[str, Any]) -> None:
        self._sync.publish(self.prefix + channel, json.dumps(event))

    async def subscribe(self, channel: str) -> AsyncGenerator[dict[str, Any], None]:
        client = Redis.from_url(self.url)
        pubsub = client.pubsub()
        await pubsub.subscribe(self.prefix + channel)
        with self._lock:
            self._active += 1
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None:
                    yield json.loads(message["data"])
        finally:
            with self._lock:
                self._active -= 1
            await pubsub.unsubscribe()
            await pubsub.aclose()
            await client.aclose()

    def subscriber_count(self) -> int:
        with self._lock:
            return self._active

    async def close(self) -> None:
        self._sync.close()
