"""The ASGI application: REST compatibility routes, GraphQL, health checks, workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import dramatiq
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from mp4e.rest_compat import exports as export_routes
from mp4e.rest_compat import files as files_routes
from mp4e.rest_compat import metadata as metadata_routes
from mp4e.rest_compat import objects as object_routes
from mp4e.rest_compat import processing as processing_routes
from mp4e.rest_compat import surfaces as surface_routes
from mp4e.rest_compat import videos as video_routes
from mp4e.rest_compat.errors import envelope, install_error_handlers
from mp4e.rest_compat.middleware import ApiMiddleware
from mp4e.runtime import INVALIDATION_CHANNEL, Runtime, build_runtime
from mp4e.schema.router import build_router
from mp4e.services import jobs as job_service
from mp4e.settings import Settings, get_settings
from mp4e.workers import handlers  # noqa: F401 - registers the job handlers
from mp4e.workers.broker import DramatiqJobQueue, build_broker, declare_actor
from mp4e.workers.runner import run_after_finish, set_worker_runtime

logger = logging.getLogger(__name__)

REAP_INTERVAL_S = 5.0


async def reap_forever(runtime: Runtime, interval_s: float = REAP_INTERVAL_S) -> None:
    """Requeue or fail jobs whose worker died, every `interval_s` seconds."""
    while True:
        try:
            await job_service.reap_expired_jobs(runtime, on_finished=run_after_finish)
        except Exception:
            logger.exception("Reaping expired jobs failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)


class MP4EApplication(FastAPI):
    """FastAPI with `ApiMiddleware` outside Starlette's middleware stack.

    Rate-limit rejections and cached reads then skip the framework's per-request work, and
    every response, including the error middleware's 500s, gets the request id and limits.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._outer = ApiMiddleware(super().__call__, self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._outer(scope, receive, send)


async def apply_invalidations(runtime: Runtime) -> None:
    """Drop cached views when any process on the event bus reports a change."""
    while True:
        try:
            async for event in runtime.events.subscribe(INVALIDATION_CHANNEL):
                runtime.apply_invalidation(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Listening for cache invalidations failed; retrying in 1 s")
            runtime.video_views.clear()
            await asyncio.sleep(1)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. Without Redis it also runs the job workers in-process."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        runtime.storage.clear_incoming()
        broker = build_broker(settings)
        runtime.queue = DramatiqJobQueue(declare_actor(broker))
        set_worker_runtime(runtime)
        app.state.runtime = runtime
        worker = None
        if not settings.redis_url:
            worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads)
            worker.start()
        reaper = asyncio.create_task(reap_forever(runtime))
        invalidations = asyncio.create_task(apply_invalidations(runtime))
        logger.info("MP4E server started (database %s)", runtime.database.engine.url.drivername)
        try:
            yield
        finally:
            reaper.cancel()
            invalidations.cancel()
            await asyncio.gather(reaper, invalidations, return_exceptions=True)
            if worker is not None:
                await asyncio.to_thread(worker.stop)
            broker.close()
            await runtime.close()
            await runtime.database.dispose()
            logger.info("MP4E server stopped")

    app = MP4EApplication(
        title="MP4E server",
        summary="Interactive video: upload, track objects, version metadata, export .mp4e.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.include_router(video_routes.router)
    app.include_router(metadata_routes.router)
    app.include_router(surface_routes.router)
    app.include_router(object_routes.router)
    app.include_router(export_routes.router)
    app.include_router(processing_routes.router)
    app.include_router(files_routes.router)
    app.include_router(build_router(lambda: app.state.runtime), prefix="/graphql")

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> dict[str, Any]:
        """Report that the process is up, with its count of open subscriptions."""
        runtime: Runtime = request.app.state.runtime
        return {"status": "ok", "activeSubscriptions": runtime.events.subscriber_count()}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Report whether the database and the broker are reachable (503 when one is not)."""
        runtime: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        try:
            async with runtime.database.session() as session:
                await session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            logger.warning("Readiness: database unreachable: %s", exc)
            checks["database"] = "unreachable"
        checks["broker"] = await _check_broker(runtime)
        ready = all(value == "ok" for value in checks.values())
        if ready:
            return JSONResponse({"status": "ready", "checks": checks})
        body = envelope("NOT_READY", "A dependency is unreachable.", details=checks)
        return JSONResponse(body, status_code=503)

    return app


async def _check_broker(runtime: Runtime) -> str:
    if not runtime.settings.redis_url:
        return "ok"
    from redis.asyncio import Redis

    client = Redis.from_url(runtime.settings.redis_url, socket_timeout=2)
    try:
        await client.ping()
        return "ok"
    except Exception as exc:
        logger.warning("Readiness: Redis unreachable: %s", exc)
        return "unreachable"
    finally:
        await client.aclose()
