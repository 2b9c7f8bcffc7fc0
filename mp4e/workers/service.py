"""The standalone worker process started by `mp4e worker` (Redis broker)."""

from __future__ import annotations

import asyncio
import logging
import signal

import dramatiq

from mp4e.runtime import build_runtime
from mp4e.settings import Settings
from mp4e.workers import handlers  # noqa: F401 - registers the job handlers
from mp4e.workers.broker import DramatiqJobQueue, build_broker, declare_actor
from mp4e.workers.runner import set_worker_runtime

logger = logging.getLogger(__name__)


async def run_worker(settings: Settings, threads: int) -> None:
    """Consume jobs until SIGTERM or SIGINT, and reap jobs of dead workers meanwhile."""
    from mp4e.app import reap_forever

    runtime = build_runtime(settings)
    broker = build_broker(settings)
    runtime.queue = DramatiqJobQueue(declare_actor(broker))
    set_worker_runtime(runtime)
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    logger.info("Worker started with %d threads", threads)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reaper = asyncio.create_task(reap_forever(runtime))
    await stop.wait()

    logger.info("Worker stopping")
    reaper.cancel()
    await asyncio.gather(reaper, return_exceptions=True)
    await asyncio.to_thread(worker.stop)
    broker.close()
    await runtime.close()
    await runtime.database.dispose()
