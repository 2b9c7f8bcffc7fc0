"""GraphQL over websockets (graphql-transport-ws): authentication and job progress."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"
SUBSCRIPTION = "subscription($id: ID!) { jobProgress(videoId: $id) }"


def _ws_url(server) -> str:  # type: ignore[no-untyped-def]
    return server.base_url.replace("http://", "ws://") + "/graphql"


async def _first_event(
    server, payload: dict[str, Any], video_id: str, until_status: str | None = None
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Subscribe and return the first message (or the first whose job has `until_status`)."""
    async with connect(_ws_url(server), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert ack["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIPTION, "variables": {"id": video_id}},
                }
            )
        )
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 30))
            data = (message.get("payload") or {}).get("data") or {}
            status = (data.get("jobProgress") or {}).get("status")
            if until_status is None or status == until_status:
                return message


@pytest.fixture(scope="module")
def ready_video(server, admin_key, sample_video) -> str:  # type: ignore[no-untyped-def]
    with server.client(admin_key) as client, sample_video.open("rb") as handle:
        video_id = client.post("/api/videos/upload", files={"file": ("a.mp4", handle)}).json()["id"]
        for _ in range(600):
            if client.get(f"/api/videos/{video_id}").json()["status"] == "ready":
                return str(video_id)
            time.sleep(0.1)
    raise AssertionError(f"Video {video_id} was not ingested within 60 s")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Authorization": "Bearer mp4e_00_wrong"}, id="wrong-key"),
    ],
)
def test_websocket_rejects_bad_key(server, payload: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    async def attempt() -> int | None:
        async with connect(_ws_url(server), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            try:
                await asyncio.wait_for(socket.recv(), 10)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None

    assert asyncio.run(attempt()) == 4403


def test_subscription_sends_latest_job_state(server, admin_key, ready_video) -> None:  # type: ignore[no-untyped-def]
    message = asyncio.run(
        _first_event(server, {"Authorization": f"Bearer {admin_key}"}, ready_video, "completed")
    )

    event = message["payload"]["data"]["jobProgress"]
    assert message["type"] == "next"
    assert event["videoId"] == ready_video
    assert event["kind"] == "ingest"
    assert event["status"] == "completed"


def test_subscription_hides_other_accounts_video(server, ready_video) -> None:  # type: ignore[no-untyped-def]
    stranger = server.create_key("*", account="ws-stranger")

    message = asyncio.run(
        _first_event(server, {"Authorization": f"Bearer {stranger}"}, ready_video)
    )

    assert message["payload"]["data"] is None
    assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_subscription_released_on_disconnect(server, admin_key, ready_video, wait_for) -> None:  # type: ignore[no-untyped-def]
    def active() -> int:
        return int(httpx.get(f"{server.base_url}/healthz").json()["activeSubscriptions"])

    baseline = active()

    async def hold_then_drop() -> int:
        async with connect(_ws_url(server), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"apiKey": admin_key}})
            )
            await socket.recv()
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": SUBSCRIPTION, "variables": {"id": ready_video}},
                    }
                )
            )
            await socket.recv()
            return await asyncio.to_thread(active)

    during = asyncio.run(hold_then_drop())

    assert during == baseline + 1
    assert wait_for(lambda: active() == baseline, timeout_s=10)


def test_subscription_streams_processing_progress_then_releases(  # type: ignore[no-untyped-def]
    server, admin_key, make_video, tmp_path, wait_for
) -> None:
    clip = make_video(
        tmp_path / "long.mp4", seconds=30, size="160x120", rate=10, extra=["-preset", "ultrafast"]
    )
    with server.client(admin_key) as client, clip.open("rb") as handle:
        video_id = client.post("/api/videos/upload", files={"file": ("long.mp4", handle)}).json()[
            "id"
        ]
        wait_for(lambda: client.get(f"/api/videos/{video_id}").json()["status"] == "ready", 60)

    def active() -> int:
        return int(httpx.get(f"{server.base_url}/healthz").json()["activeSubscriptions"])

    def start_job() -> str:
        with server.client(admin_key) as client:
            response = client.post(f"/api/videos/{video_id}/process", json={"fps": 10})
        assert response.status_code == 200, response.text
        return str(response.json()["jobId"])

    baseline = active()

    async def follow_then_drop() -> tuple[str, list[dict[str, Any]], int]:
        """Subscribe, start processing, and leave after two frames' progress of the job."""
        async with connect(_ws_url(server), subprotocols=[PROTOCOL]) as socket:  # type: ignore[list-item]
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"apiKey": admin_key}})
            )
            await socket.recv()
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": SUBSCRIPTION, "variables": {"id": video_id}},
                    }
                )
            )
            await socket.recv()  # the latest state: the completed ingest job
            job_id = await asyncio.to_thread(start_job)
            events: list[dict[str, Any]] = []
            frames: set[int] = set()
            while len(frames) < 2:
                message = json.loads(await asyncio.wait_for(socket.recv(), 60))
                event = message["payload"]["data"]["jobProgress"]
                if event["jobId"] != job_id:
                    continue
                events.append(event)
                if event["status"] == "processing" and event["currentFrame"] > 0:
                    frames.add(event["currentFrame"])
            return job_id, events, await asyncio.to_thread(active)

    try:
        job_id, events, during = asyncio.run(follow_then_drop())
    finally:
        with server.client(admin_key) as client:
            client.post(f"/api/videos/{video_id}/process/cancel")
    progress = [event["progress"] for event in events if event["status"] == "processing"]
    framed = [event for event in events if event["currentFrame"] > 0]

    assert during == baseline + 1
    assert wait_for(lambda: active() == baseline, timeout_s=10)
    assert [event["totalFrames"] for event in framed] == [300] * len(framed)
    assert progress == sorted(progress)
    assert progress[-1] > 0
    assert events[-1]["status"] == "processing"
    assert job_id == events[-1]["jobId"]
