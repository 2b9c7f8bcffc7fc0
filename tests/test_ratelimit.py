"""Per-key rate limits: headers on every response, 429 with Retry-After, exact under load."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import pytest


def test_rate_limit_headers_count_down_then_429(server_factory) -> None:  # type: ignore[no-untyped-def]
    limited = server_factory("sqlite", MP4E_RATE_LIMIT_REQUESTS="3", MP4E_RATE_LIMIT_WINDOW_S="60")
    key = limited.create_key("*")

    with limited.client(key) as client:
        responses = [client.get("/api/videos") for _ in range(4)]
        not_found = client.get("/api/videos/video_missing")

    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in responses[:3]]
    assert remaining == [2, 1, 0]
    assert responses[0].headers["x-ratelimit-limit"] == "3"
    assert int(responses[0].headers["x-ratelimit-reset"]) > time.time()
    assert responses[3].status_code == 429
    assert responses[3].json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(responses[3].headers["retry-after"]) <= 60
    assert not_found.status_code == 429


def test_rate_limit_is_per_key(server_factory) -> None:  # type: ignore[no-untyped-def]
    limited = server_factory("sqlite", MP4E_RATE_LIMIT_REQUESTS="2")
    first, second = limited.create_key("*"), limited.create_key("*")

    with limited.client(first) as a, limited.client(second) as b:
        spent = [a.get("/api/videos").status_code for _ in range(3)]
        fresh = b.get("/api/videos")

    assert spent == [200, 200, 429]
    assert fresh.status_code == 200
    assert fresh.headers["x-ratelimit-remaining"] == "1"


def test_rate_limit_exact_across_processes_with_redis(server_factory) -> None:  # type: ignore[no-untyped-def]
    first = server_factory(
        "postgres", MP4E_RATE_LIMIT_REQUESTS="40", MP4E_RATE_LIMIT_WINDOW_S="120"
    )
    key = first.create_key("*")
    env = dict(first.env)
    port = int(first.base_url.rsplit(":", 1)[1]) + 1
    second_url = f"http://127.0.0.1:{port}"
    with (first.log_dir / "serve-2.log").open("ab") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "mp4e.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    first.processes.append(second)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{second_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)

    async def burst() -> list[int]:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            urls = [first.base_url, second_url] * 50
            responses = await asyncio.gather(*(client.get(f"{u}/api/videos") for u in urls))
        return [r.status_code for r in responses]

    statuses = asyncio.run(burst())

    assert statuses.count(200) == 40
    assert statuses.count(429) == 60


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_is_not_rate_limited(server_factory, path: str) -> None:  # type: ignore[no-untyped-def]
    limited = server_factory("sqlite", MP4E_RATE_LIMIT_REQUESTS="1")

    with httpx.Client(base_url=limited.base_url) as client:
        statuses = [client.get(path).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
