"""API-key and scope rules for every REST endpoint and every GraphQL field, in one table.

Each operation is tried with no key, a malformed key, a revoked key, a key without the needed
scope (403) and a full key of another account (404, never 403, so existence stays hidden).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

ALL_SCOPES = ("videos:read", "videos:write", "metadata:read", "metadata:write", "processing")


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str
    scope: str
    json: Any = None
    per_video: bool = True


@dataclass(frozen=True)
class GraphQLCall:
    query: str
    scope: str
    per_video: bool = True


REST_CALLS = [
    RestCall("GET", "/api/videos", "videos:read", per_video=False),
    RestCall("POST", "/api/videos/upload", "videos:write", per_video=False),
    RestCall("GET", "/api/videos/{video}", "videos:read"),
    RestCall("DELETE", "/api/videos/{video}", "videos:write"),
    RestCall("GET", "/api/videos/{video}/metadata", "metadata:read"),
    RestCall("PATCH", "/api/videos/{video}/metadata", "metadata:write", {"variables": []}),
    RestCall("GET", "/api/videos/{video}/versions", "metadata:read"),
    RestCall("GET", "/api/videos/{video}/objects", "metadata:read"),
    RestCall("PATCH", "/api/videos/{video}/objects/obj_x", "metadata:write", {"userLabel": "x"}),
    RestCall("DELETE", "/api/videos/{video}/objects/obj_x", "metadata:write"),
    RestCall(
        "POST",
        "/api/videos/{video}/objects/surface",
        "processing",
        {
            "name": "s",
            "frame": 0,
            "corners": [
                {"x": 0.2, "y": 0.2},
                {"x": 0.8, "y": 0.2},
                {"x": 0.8, "y": 0.8},
                {"x": 0.2, "y": 0.8},
            ],
        },
    ),
    RestCall("POST", "/api/videos/{video}/process", "processing", {"fps": 5}),
    RestCall("GET", "/api/videos/{video}/process/status", "videos:read"),
    RestCall("POST", "/api/videos/{video}/process/cancel", "processing"),
    RestCall("GET", "/api/videos/{video}/export", "metadata:read"),
    RestCall("GET", "/api/videos/{video}/jobs/job_0000000000000000", "videos:read"),
    RestCall("POST", "/api/videos/{video}/jobs/job_0000000000000000/cancel", "processing"),
]

GRAPHQL_CALLS = [
    GraphQLCall("{ videos { total } }", "videos:read", per_video=False),
    GraphQLCall('{ video(id: "{video}") { id } }', "videos:read"),
    GraphQLCall('{ video(id: "{video}") { metadata } }', "metadata:read"),
    GraphQLCall('mutation { deleteVideo(id: "{video}") { success } }', "videos:write"),
    GraphQLCall('{ metadata(videoId: "{video}") }', "metadata:read"),
    GraphQLCall('{ metadataVersions(videoId: "{video}") { currentVersion } }', "metadata:read"),
    GraphQLCall('{ objects(videoId: "{video}") { id } }', "metadata:read"),
    GraphQLCall(
        'mutation { patchMetadata(videoId: "{video}", patch: {}) { version } }', "metadata:write"
    ),
    GraphQLCall(
        'mutation { restoreMetadataVersion(videoId: "{video}", version: 1) { version } }',
        "metadata:write",
    ),
    GraphQLCall(
        'mutation { updateObject(videoId: "{video}", objectId: "o", name: "n") { version } }',
        "metadata:write",
    ),
    GraphQLCall(
        'mutation { deleteObject(videoId: "{video}", objectId: "o") { version } }', "metadata:write"
    ),
    GraphQLCall('mutation { exportVideo(videoId: "{video}") { fileSize } }', "metadata:read"),
    GraphQLCall('{ processingStatus(videoId: "{video}") { status } }', "videos:read"),
    GraphQLCall(
        'mutation { startProcessing(videoId: "{video}", input: {fps: 5}) { jobId } }', "processing"
    ),
    GraphQLCall('mutation { cancelProcessing(videoId: "{video}") { status } }', "processing"),
    GraphQLCall(
        'mutation { createSurface(videoId: "{video}", name: "s", frame: 0, corners: ['
        "{x: 0.2, y: 0.2}, {x: 0.8, y: 0.2}, {x: 0.8, y: 0.8}, {x: 0.2, y: 0.8}]) "
        "{ objectId } }",
        "processing",
    ),
    GraphQLCall(
        '{ videoJob(videoId: "{video}", jobId: "job_0000000000000000") { status } }', "videos:read"
    ),
    GraphQLCall(
        'mutation { cancelJob(videoId: "{video}", jobId: "job_0000000000000000") { status } }',
        "processing",
    ),
]


def _other_scope(required: str) -> str:
    return next(scope for scope in ALL_SCOPES if scope != required)


def _ids(calls: list[Any]) -> list[str]:
    return [
        f"{getattr(c, 'method', 'GQL')} {getattr(c, 'path', getattr(c, 'query', ''))}"
        for c in calls
    ]


@pytest.fixture(scope="module")
def world(server, sample_video) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A video of account `owner`, and keys of every kind."""
    owner = "access-owner"
    owner_key = server.create_key("*", account=owner)
    with server.client(owner_key) as client, sample_video.open("rb") as handle:
        video_id = client.post("/api/videos/upload", files={"file": ("a.mp4", handle)}).json()["id"]
    revoked = server.create_key("*", account=owner, name="to-revoke")
    key_id = "key_" + revoked.split("_")[1]
    server.cli("keys", "revoke", key_id)
    return {
        "video": video_id,
        "owner_key": owner_key,
        "revoked_key": revoked,
        "other_key": server.create_key("*", account="access-stranger"),
        "scoped_keys": {scope: server.create_key(scope, account=owner) for scope in ALL_SCOPES},
    }


def _rest(server, key: str | None, call: RestCall, video: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": key} if key and key.startswith("Bearer") else {}
    if key and not key.startswith("Bearer"):
        headers = {"Authorization": f"Bearer {key}"}
    path = call.path.format(video=video)
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        if call.path.endswith("/upload"):
            return client.post(path, files={"file": ("x.mp4", b"\x00" * 16)})
        return client.request(call.method, path, json=call.json)


def _graphql(server, key: str | None, call: GraphQLCall, video: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    query = call.query.replace("{video}", video)
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        return client.post("/graphql", json={"query": query}).json()  # type: ignore[no-any-return]


CASES = [
    pytest.param("none", 401, "UNAUTHORIZED", id="no-key"),
    pytest.param("malformed", 401, "UNAUTHORIZED", id="wrong-key"),
    pytest.param("revoked", 401, "UNAUTHORIZED", id="revoked-key"),
    pytest.param("missing_scope", 403, "FORBIDDEN", id="missing-scope"),
    pytest.param("other_account", 404, "NOT_FOUND", id="other-account"),
]


def _key_for(world: dict[str, Any], case: str, scope: str) -> str | None:
    return {
        "none": None,
        "malformed": "mp4e_0000000000000000_not-a-real-secret",
        "revoked": world["revoked_key"],
        "missing_scope": world["scoped_keys"][_other_scope(scope)],
        "other_account": world["other_key"],
    }[case]


@pytest.mark.parametrize("call", REST_CALLS, ids=_ids(REST_CALLS))
@pytest.mark.parametrize(("case", "status", "code"), CASES)
def test_rest_access_rules(server, world, call, case, status, code):  # type: ignore[no-untyped-def]
    if case == "other_account" and not call.per_video:
        pytest.skip("lists and uploads act on the caller's own account")

    response = _rest(server, _key_for(world, case, call.scope), call, world["video"])

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("call", GRAPHQL_CALLS, ids=_ids(GRAPHQL_CALLS))
@pytest.mark.parametrize(("case", "status", "code"), CASES)
def test_graphql_access_rules(server, world, call, case, status, code):  # type: ignore[no-untyped-def]
    if case == "other_account" and not call.per_video:
        pytest.skip("lists act on the caller's own account")

    body = _graphql(server, _key_for(world, case, call.scope), call, world["video"])

    assert body["errors"][0]["extensions"]["code"] == code, json.dumps(body)


def test_owner_key_reaches_video(server, world):  # type: ignore[no-untyped-def]
    with server.client(world["owner_key"]) as client:
        response = client.get(f"/api/videos/{world['video']}")

    assert response.status_code == 200


UPLOAD_MUTATION = "mutation($file: Upload!) { uploadVideo(file: $file) { id } }"


@pytest.mark.parametrize(("case", "status", "code"), CASES[:4])
def test_graphql_upload_access_rules(server, world, sample_video, case, status, code):  # type: ignore[no-untyped-def]
    key = _key_for(world, case, "videos:write")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    operations = {"query": UPLOAD_MUTATION, "variables": {"file": None}}

    with (
        httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client,
        sample_video.open("rb") as handle,
    ):
        body = client.post(
            "/graphql",
            data={"operations": json.dumps(operations), "map": '{"0": ["variables.file"]}'},
            files={"0": ("a.mp4", handle)},
        ).json()

    assert body["errors"][0]["extensions"]["code"] == code


SUBSCRIPTION = "subscription($id: ID!) { jobProgress(videoId: $id) }"


async def _subscribe(server, key: str | None, video: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Return {"closed": code} when the socket is refused, else the first result message."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url = server.base_url.replace("http://", "ws://") + "/graphql"
    payload = {"Authorization": f"Bearer {key}"} if key else {}
    async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        try:
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            await asyncio.wait_for(socket.recv(), 10)
            message = {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIPTION, "variables": {"id": video}},
            }
            await socket.send(json.dumps(message))
            return json.loads(await asyncio.wait_for(socket.recv(), 10))  # type: ignore[no-any-return]
        except ConnectionClosed as closed:
            return {"closed": closed.rcvd.code if closed.rcvd else None}


@pytest.mark.parametrize(("case", "status", "code"), CASES)
def test_subscription_access_rules(server, world, case, status, code):  # type: ignore[no-untyped-def]
    message = asyncio.run(_subscribe(server, _key_for(world, case, "videos:read"), world["video"]))

    if status == 401:
        assert message == {"closed": 4403}
    else:
        assert message["payload"]["errors"][0]["extensions"]["code"] == code
