"""Benchmark metadata writes and reads on a document with many long tracks.

Starts `mp4e serve` on a fresh database, stores two documents directly with the metadata store
(one with OBJECTS objects of FRAMES tracked frames each, one with no objects), then measures
over HTTP on 127.0.0.1:

- PATCH /api/videos/:id/metadata adding one overlay, on both documents, interleaved;
- the storage each of those versions added (version row plus new blobs);
- GET /api/videos/:id/metadata and the GraphQL `metadata` query of the large document.

Usage: .venv/bin/python scripts/bench_metadata.py [--backend sqlite|postgres] [--objects 200]
       [--frames 3000] [--patches 30] [--reads 20]

Prints a Markdown report. PostgreSQL uses MP4E_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test) to create and drop a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from mp4e.db import Database
from mp4e.metadata.document import build_box_track, new_document, summarize_track
from mp4e.models import Account, Blob, MetadataVersion, Video
from mp4e.models.video import VideoStatus
from mp4e.services import metadata_store

POSTGRES_ADMIN_URL = os.environ.get(
    "MP4E_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
ACCOUNT = "bench"
DETAILS = {"totalFrames": 3000, "fps": 30.0, "width": 1920, "height": 1080, "duration": 100.0}


def tracked_document(object_count: int, frame_count: int) -> dict[str, Any]:
    """Build a document with `object_count` box tracks of `frame_count` frames (random walks)."""
    rng = np.random.default_rng(0)
    document = new_document(dict(DETAILS, totalFrames=frame_count))
    frames = np.arange(frame_count)
    for index in range(object_count):
        start = rng.uniform(0.1, 0.5, 2)
        walk = np.cumsum(rng.normal(0, 0.0005, (frame_count, 2)), axis=0)
        top_left = np.clip(start + walk, 0.0, 0.6)
        boxes = np.hstack([top_left, top_left + 0.3])
        track = build_box_track(frames, frames / 30.0, boxes, rng.uniform(0.5, 1.0, frame_count))
        object_id = f"obj_{index:03d}"
        document["objects"][object_id] = {
            "id": object_id,
            "label": "person",
            "customData": {},
            "kind": "box",
            "source": "ai",
            "track": track,
            **summarize_track(track, "box"),
        }
    return document


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bench:
    def __init__(self, backend: str, root: Path) -> None:
        self.backend = backend
        self.root = root
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MP4E_")}
        self.env.update(
            MP4E_DATA_DIR=str(root / "data"),
            MP4E_SECRET_KEY=secrets.token_hex(16),
            MP4E_RATE_LIMIT_REQUESTS="1000000",
            MP4E_PUBLIC_URL=self.base_url,
        )
        self.database_name: str | None = None
        if backend == "postgres":
            self.database_name = f"mp4e_bench_{secrets.token_hex(4)}"
            self._psql(f"CREATE DATABASE {self.database_name}")
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            base = base.replace("postgresql://", "postgresql+asyncpg://")
            self.env["MP4E_DATABASE_URL"] = f"{base}/{self.database_name}"
        self.database_url = self.env.get(
            "MP4E_DATABASE_URL", f"sqlite+aiosqlite:///{root / 'data' / 'mp4e.db'}"
        )
        self.server: subprocess.Popen[bytes] | None = None

    def _psql(self, command: str) -> None:
        subprocess.run(["psql", POSTGRES_ADMIN_URL, "-q", "-c", command], check=True)

    def start(self) -> None:
        log = (self.root / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mp4e.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"mp4e serve did not start; see {self.root / 'serve.log'}")

    def create_key(self) -> str:
        command = [sys.executable, "-m", "mp4e.cli", "keys", "create", "--name", "bench"]
        result = subprocess.run(
            [*command, "--account", ACCOUNT],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=30)
        if self.database_name:
            self._psql(f"DROP DATABASE IF EXISTS {self.database_name} WITH (FORCE)")


async def store_video(database_url: str, document: dict[str, Any]) -> str:
    """Insert a ready video of the bench account whose version 1 is `document`."""
    database = Database(database_url, poolclass=NullPool)
    try:
        async with database.serialized() as session:
            account_id = (
                await session.execute(select(Account.id).where(Account.name == ACCOUNT))
            ).scalar_one()
            video = Video(
                account_id=account_id,
                name="bench",
                file_name="source.mp4",
                size_bytes=1,
                status=VideoStatus.READY,
                current_version=1,
            )
            session.add(video)
            await session.flush()
            await metadata_store.add_version(
                session,
                video_id=video.id,
                version=1,
                document=document,
                description="Benchmark document",
                author="bench",
                previous=None,
            )
        return video.id
    finally:
        await database.dispose()


async def stored_bytes(database_url: str, video_id: str) -> int:
    """Sum the stored column bytes of a video's versions and blobs (no page or index overhead)."""
    database = Database(database_url, poolclass=NullPool)
    try:
        async with database.session() as session:
            blobs = (
                await session.execute(
                    select(func.coalesce(func.sum(Blob.size_bytes), 0)).where(
                        Blob.video_id == video_id
                    )
                )
            ).scalar_one()
            rows = (
                await session.execute(
                    select(MetadataVersion).where(MetadataVersion.video_id == video_id)
                )
            ).scalars()
            versions = sum(_row_bytes(row) for row in rows)
        return int(blobs) + versions
    finally:
        await database.dispose()


def _row_bytes(row: MetadataVersion) -> int:
    document = metadata_store.encode_json(row.document)
    text = row.objects_hash + row.description + (row.author or "") + row.video_id
    return len(document) + len(text.encode()) + 8 * 3  # id, version, created_at


def overlay_patch(overlay_id: str) -> dict[str, Any]:
    new_overlay = {
        "id": overlay_id,
        "name": "CTA",
        "position": {"x": 0.9, "y": 0.1},
        "plugin": {"type": "core:button", "config": {"text": "Shop Now"}},
    }
    return {"layers": [{"id": "layer_main", "overlays": [new_overlay]}]}


def timed(call: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, response


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> str:
    p50 = percentile(values, 0.5) * 1000
    p99 = percentile(values, 0.99) * 1000
    return f"{p50:.1f} | {p99:.1f} | {statistics.mean(values) * 1000:.1f}"


def measure_patches(
    client: httpx.Client, video_ids: dict[str, str], count: int
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in video_ids}
    for round_number in range(count + 3):
        for name, video_id in video_ids.items():
            url = f"/api/videos/{video_id}/metadata"
            elapsed, response = timed(
                lambda url=url, n=round_number: client.patch(url, json=overlay_patch(f"o{n}"))
            )
            response.raise_for_status()
            if round_number >= 3:  # the first rounds warm the caches
                timings[name].append(elapsed)
    return timings


def measure_reads(client: httpx.Client, video_id: str, count: int) -> dict[str, Any]:
    url = f"/api/videos/{video_id}/metadata"
    cold, response = timed(lambda: client.get(url))
    response.raise_for_status()
    size_bytes = len(response.content)
    rest = [timed(lambda: client.get(url))[0] for _ in range(count)]

    query = {"query": f'{{ metadata(videoId: "{video_id}") }}'}
    graphql = []
    for _ in range(count):
        elapsed, response = timed(lambda: client.post("/graphql", json=query))
        response.raise_for_status()
        graphql.append(elapsed)
    return {"cold": cold, "size": size_bytes, "rest": rest, "graphql": graphql}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--patches", type=int, default=30, help="measured PATCHes per document")
    parser.add_argument("--reads", type=int, default=20, help="measured GETs per API")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mp4e-bench-") as temp:
        bench = Bench(args.backend, Path(temp))
        try:
            bench.start()
            key = bench.create_key()
            started = time.perf_counter()
            tracked = tracked_document(args.objects, args.frames)
            video_ids = {
                "tracks": asyncio.run(store_video(bench.database_url, tracked)),
                "no tracks": asyncio.run(store_video(bench.database_url, new_document(DETAILS))),
            }
            setup_s = time.perf_counter() - started
            before = {
                n: asyncio.run(stored_bytes(bench.database_url, v)) for n, v in video_ids.items()
            }

            with httpx.Client(
                base_url=bench.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300
            ) as client:
                patches = measure_patches(client, video_ids, args.patches)
                after = {
                    n: asyncio.run(stored_bytes(bench.database_url, v))
                    for n, v in video_ids.items()
                }
                reads = measure_reads(client, video_ids["tracks"], args.reads)
        finally:
            bench.stop()

    versions_added = args.patches + 3
    ratio = percentile(patches["tracks"], 0.5) / percentile(patches["no tracks"], 0.5)
    print(f"## {args.backend}: {args.objects} objects x {args.frames} frames\n")
    print(f"Document size {reads['size'] / 1e6:.1f} MB; stored directly in {setup_s:.1f} s.\n")
    print("| PATCH adding one overlay | p50 ms | p99 ms | mean ms | bytes stored per version |")
    print("|---|---|---|---|---|")
    for name, timings in patches.items():
        per_version = (after[name] - before[name]) / versions_added
        print(f"| {name} | {summary_ms(timings)} | {per_version:.0f} |")
    print(f"\np50 ratio, tracks / no tracks: {ratio:.2f} ({args.patches} PATCHes each)\n")
    print("| GET of the whole document | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|")
    cold_ms = reads["cold"] * 1000
    print(f"| REST (first read, cold cache: {cold_ms:.0f} ms) | {summary_ms(reads['rest'])} |")
    print(f"| GraphQL `metadata` | {summary_ms(reads['graphql'])} |")
    print(f"\n{args.reads} reads each; p99 of {args.reads} samples is close to the maximum.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
