"""Concurrent metadata writes over real HTTP: no lost update, exactly one winner per version."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

WRITERS = 50


def upload_ready(client: httpx.Client, path: Path, wait_for: Callable[..., Any]) -> str:
    """Upload a video and wait until its first metadata version exists."""
    with path.open("rb") as handle:
        response = client.post("/api/videos/upload", files={"file": ("clip.mp4", handle)})
    assert response.status_code == 201, response.text
    video_id: str = response.json()["id"]
    wait_for(lambda: client.get(f"/api/videos/{video_id}/metadata").status_code == 200, 60)
    return video_id


def overlay_patch(overlay_id: str) -> dict[str, Any]:
    new_overlay = {
        "id": overlay_id,
        "name": overlay_id,
        "position": {"x": 0.5, "y": 0.5},
        "plugin": {"type": "core:button", "config": {}},
    }
    return {"layers": [{"id": "layer_main", "overlays": [new_overlay]}]}


async def send_all(
    base_url: str, key: str, video_id: str, requests: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    """Send every (body, headers) PATCH at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=120,
    ) as client:
        return await asyncio.gather(
            *(
                client.patch(f"/api/videos/{video_id}/metadata", json=body, headers=headers)
                for body, headers in requests
            )
        )


@pytest.fixture(scope="module")
def key(server) -> str:  # type: ignore[no-untyped-def]
    return server.create_key("*", account="concurrency-tests")


@pytest.fixture
def video_id(server, key, sample_video, wait_for) -> str:  # type: ignore[no-untyped-def]
    with server.client(key) as client:
        return upload_ready(client, sample_video, wait_for)


def test_same_if_match_has_one_winner(server, key, video_id):  # type: ignore[no-untyped-def]
    requests = [(overlay_patch(f"o{i}"), {"If-Match": '"1"'}) for i in range(WRITERS)]

    responses = asyncio.run(send_all(server.base_url, key, video_id, requests))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [409] * (WRITERS - 1)
    conflicts = [r.json()["error"] for r in responses if r.status_code == 409]
    assert {error["code"] for error in conflicts} == {"VERSION_CONFLICT"}
    assert all(error["details"] == {"expected": 1, "current": 2} for error in conflicts)
    with server.client(key) as client:
        history = client.get(f"/api/videos/{video_id}/versions").json()
        document = client.get(f"/api/videos/{video_id}/metadata").json()
    assert history["currentVersion"] == 2
    assert len(document["layers"][0]["overlays"]) == 1


def test_writes_without_if_match_all_kept(server, key, video_id):  # type: ignore[no-untyped-def]
    requests = [(overlay_patch(f"o{i}"), {}) for i in range(WRITERS)]

    responses = asyncio.run(send_all(server.base_url, key, video_id, requests))

    assert [r.status_code for r in responses] == [200] * WRITERS
    assert sorted(r.json()["version"] for r in responses) == list(range(2, WRITERS + 2))
    with server.client(key) as client:
        history = client.get(f"/api/videos/{video_id}/versions").json()
        document = client.get(f"/api/videos/{video_id}/metadata").json()
    assert [v["version"] for v in history["versions"]] == list(range(WRITERS + 1, 0, -1))
    overlay_ids = {overlay["id"] for overlay in document["layers"][0]["overlays"]}
    assert overlay_ids == {f"o{i}" for i in range(WRITERS)}
