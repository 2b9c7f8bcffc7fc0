"""Fixed-window request budgets per API key, in memory or shared through Redis."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


@dataclass(frozen=True)
class RateLimitState:
    """Values of the `X-RateLimit-*` headers for one request."""

    limit: int
    remaining: int
    reset_at: int
    allowed: bool

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter(Protocol):
    async def hit(self, subject: str) -> RateLimitState: ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Budgets held in this process; correct for a single API process."""

    def __init__(self, limit: int, window_s: int) -> None:
        self.limit = limit
        self.window_s = window_s
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, subject: str) -> RateLimitState:
        # No await between the read and the write, so concurrent requests on the event loop
        # cannot interleave here.
        window = int(time.time()) // self.window_s
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
        count = self._counts.get((subject, window), 0) + 1
        self._counts[(subject, window)] = count
        return _state(self.limit, count, (window + 1) * self.window_s)

    async def close(self) -> None:
        return None


class RedisRateLimiter:
    """Budgets in Redis, shared by every API process; INCR makes the count exact."""

    def __init__(self, redis: Redis, limit: int, window_s: int, namespace: str = "mp4e") -> None:
        self.redis = redis
        self.namespace = namespace
        self.limit = limit
        self.window_s = window_s

    async def hit(self, subject: str) -> RateLimitState:
        window = int(time.time()) // self.window_s
        key = f"{self.namespace}:ratelimit:{subject}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_s + 5)
            count, _ = await pipe.execute()
        return _state(self.limit, int(count), (window + 1) * self.window_s)

    async def close(self) -> None:
        await self.redis.aclose()


def _state(limit: int, count: int, reset_at: int) -> RateLimitState:
    return RateLimitState(
        limit=limit, remaining=max(0, limit - count), reset_at=reset_at, allowed=count <= limit
    )
