"""Metadata over REST and GraphQL: reads, versions, partial updates, limits and restores."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.pool import NullPool

from mp4e.db import Database
from mp4e.metadata.merge import merge_patch
from mp4e.models import Account, Video


def upload_ready(client: httpx.Client, path: Path, wait_for: Callable[..., Any]) -> str:
    """Upload a video and wait until its first metadata version exists."""
    with path.open("rb") as handle:
        response = client.post("/api/videos/upload", files={"file": ("clip.mp4", handle)})
    assert response.status_code == 201, response.text
    video_id: str = response.json()["id"]
    wait_for(lambda: client.get(f"/api/videos/{video_id}/metadata").status_code == 200, 60)
    return video_id


def overlay(overlay_id: str, x: float = 0.5, **fields: Any) -> dict[str, Any]:
    return {
        "id": overlay_id,
        "name": overlay_id,
        "position": {"x": x, "y": 0.5},
        "plugin": {"type": "core:button", "config": {"text": overlay_id}},
        **fields,
    }


def add_overlay_patch(overlay_id: str, x: float = 0.5) -> dict[str, Any]:
    return {"layers": [{"id": "layer_main", "overlays": [overlay(overlay_id, x)]}]}


def version_count(client: httpx.Client, video_id: str) -> int:
    return len(client.get(f"/api/videos/{video_id}/versions").json()["versions"])


def canonical(document: Any) -> str:
    """JSON text that compares documents as JSON: key order ignored, 1 and 1.0 kept apart."""
    return json.dumps(document, sort_keys=True)


def graphql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def client(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    with server.client(server.create_key("*", account="metadata-tests")) as client:
        yield client


@pytest.fixture
def video_id(client, sample_video, wait_for) -> str:  # type: ignore[no-untyped-def]
    """A new video for a test that adds versions."""
    return upload_ready(client, sample_video, wait_for)


@pytest.fixture(scope="module")
def unchanged_video_id(client, sample_video, wait_for) -> str:  # type: ignore[no-untyped-def]
    """A video shared by the tests of rejected writes, which each check it stays at version 1."""
    return upload_ready(client, sample_video, wait_for)


def test_get_metadata_version_one_with_etag(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    response = client.get(f"/api/videos/{unchanged_video_id}/metadata")

    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["schemaVersion"] == "2.0"
    assert document["videoDetails"]["totalFrames"] == 10
    assert document["objects"] == {}
    assert document["layers"] == [{"id": "layer_main", "name": "Main", "overlays": []}]
    assert list(document)[:3] == ["schemaVersion", "videoDetails", "objects"]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        pytest.param("version=7", 404, "NOT_FOUND", id="unknown-version"),
        pytest.param("version=abc", 400, "INVALID_PARAMETER", id="not-an-integer"),
        pytest.param("version=0", 400, "INVALID_PARAMETER", id="zero"),
        pytest.param("version=-2", 400, "INVALID_PARAMETER", id="negative"),
    ],
)
def test_get_metadata_bad_version(client, unchanged_video_id, query, status, code):  # type: ignore[no-untyped-def]
    response = client.get(f"/api/videos/{unchanged_video_id}/metadata?{query}")

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == "version"


def test_patch_adds_overlay_as_new_version(client, video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{video_id}/metadata", json=add_overlay_patch("overlay_new")
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["version"] == 2
    assert body["updatedAt"].endswith("Z")
    assert response.headers["etag"] == '"2"'
    current = client.get(f"/api/videos/{video_id}/metadata")
    assert current.headers["etag"] == '"2"'
    assert current.json()["layers"][0]["overlays"] == [overlay("overlay_new")]
    history = client.get(f"/api/videos/{video_id}/versions").json()
    assert history["currentVersion"] == 2
    assert [v["version"] for v in history["versions"]] == [2, 1]
    assert history["versions"][0]["description"] == "Added overlay overlay_new to layer layer_main"
    assert history["versions"][0]["author"].startswith("key_")
    assert history["versions"][0]["createdAt"].endswith("Z")


def test_patch_keeps_client_description(client, video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{video_id}/metadata",
        params={"description": "Added the summer CTA"},
        json=add_overlay_patch("cta"),
    )

    assert response.status_code == 200
    history = client.get(f"/api/videos/{video_id}/versions").json()
    assert history["versions"][0]["description"] == "Added the summer CTA"


def test_patch_rejects_long_description(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{unchanged_video_id}/metadata",
        params={"description": "x" * 501},
        json=add_overlay_patch("cta"),
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "description"
    assert version_count(client, unchanged_video_id) == 1


def test_patch_without_change_adds_no_version(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{unchanged_video_id}/metadata", json={"schemaVersion": "2.0"}
    )

    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert version_count(client, unchanged_video_id) == 1


def test_patch_if_match_accepts_current_version(client, video_id):  # type: ignore[no-untyped-def]
    statuses = []
    for number, header in enumerate(['"1"', "2", "*", '"4"'], start=2):
        response = client.patch(
            f"/api/videos/{video_id}/metadata",
            json=add_overlay_patch(f"cta{number}"),
            headers={"If-Match": header},
        )
        statuses.append((response.status_code, response.json().get("version")))

    assert statuses == [(200, 2), (200, 3), (200, 4), (200, 5)]


def test_patch_stale_if_match_conflicts(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{unchanged_video_id}/metadata",
        json=add_overlay_patch("cta"),
        headers={"If-Match": '"5"'},
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "VERSION_CONFLICT"
    assert error["details"] == {"expected": 5, "current": 1}
    assert version_count(client, unchanged_video_id) == 1


@pytest.mark.parametrize(
    "header",
    [
        pytest.param('W/"1"', id="weak"),
        pytest.param('"1", "2"', id="list"),
        pytest.param("one", id="not-a-number"),
        pytest.param('""', id="empty-tag"),
    ],
)
def test_patch_rejects_malformed_if_match(client, unchanged_video_id, header):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{unchanged_video_id}/metadata",
        json=add_overlay_patch("cta"),
        headers={"If-Match": header},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "If-Match"
    assert version_count(client, unchanged_video_id) == 1


BAD_BODIES = [
    pytest.param(b"[1, 2]", 400, "INVALID_PARAMETER", None, id="array"),
    pytest.param(b"", 400, "INVALID_PARAMETER", None, id="empty"),
    pytest.param(b'{"layers": ', 400, "INVALID_PARAMETER", None, id="truncated"),
    pytest.param(
        b'{"settings": {"volume": NaN}}', 400, "INVALID_PARAMETER", "settings.volume", id="nan"
    ),
    pytest.param(
        b'{"settings": {"volume": -Infinity}}',
        400,
        "INVALID_PARAMETER",
        "settings.volume",
        id="infinity",
    ),
    pytest.param(
        b'{"settings": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
        400,
        "INVALID_PARAMETER",
        "settings" + ".a" * 31,
        id="too-deep",
    ),
    pytest.param(
        json.dumps(
            {"layers": [{"id": "layer_main", "overlays": [overlay("o", x="left")]}]}
        ).encode(),
        400,
        "INVALID_PARAMETER",
        "layers[id=layer_main].overlays[id=o].position.x",
        id="wrong-type",
    ),
    pytest.param(
        json.dumps({"layers": [{"id": "layer_main", "overlays": [overlay("o", x=1.5)]}]}).encode(),
        400,
        "INVALID_PARAMETER",
        "layers[id=layer_main].overlays[id=o].position.x",
        id="out-of-range",
    ),
    pytest.param(
        b'{"variables": "none"}', 400, "INVALID_PARAMETER", "variables", id="array-expected"
    ),
    pytest.param(
        b'{"videoDetails": {"fps": 60}}', 400, "READ_ONLY_FIELD", "videoDetails.fps", id="fps"
    ),
    pytest.param(
        b'{"schemaVersion": "3.0"}', 400, "READ_ONLY_FIELD", "schemaVersion", id="schema-version"
    ),
    pytest.param(
        b'{"objects": {"o1": {"id": "o1", "kind": "box", "source": "ai"}}}',
        400,
        "READ_ONLY_FIELD",
        "objects.o1.source",
        id="ai-object",
    ),
    pytest.param(
        b'{"objects": {"m1": {"id": "m1", "kind": "box", "source": "manual", "userLabel": 5}}}',
        400,
        "INVALID_PARAMETER",
        "objects.m1.userLabel",
        id="manual-object-wrong-type",
    ),
    pytest.param(
        b'{"variables": [{"id": "v", "$patch": "replace"}]}',
        400,
        "INVALID_PARAMETER",
        "variables[id=v].$patch",
        id="bad-directive",
    ),
    pytest.param(
        b'{"settings": {"note": "' + b"x" * (8 * 1024 * 1024) + b'"}}',
        413,
        "PAYLOAD_TOO_LARGE",
        None,
        id="too-large",
    ),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_BODIES)
def test_patch_rejects_bad_body(client, unchanged_video_id, body, status, code, field):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{unchanged_video_id}/metadata",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert version_count(client, unchanged_video_id) == 1


def test_patch_rejects_streamed_body_over_limit(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    chunk = b" " * (1024 * 1024)

    def body():  # type: ignore[no-untyped-def]
        yield b'{"settings": {}'
        for _ in range(9):
            yield chunk
        yield b"}"

    response = client.patch(
        f"/api/videos/{unchanged_video_id}/metadata",
        content=body(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["details"]["limit"] == 8 * 1024 * 1024
    assert version_count(client, unchanged_video_id) == 1


def _insert_uploading_video(server, account_name: str) -> str:  # type: ignore[no-untyped-def]
    """Insert a video row that ingest has not reached, as a real upload looks at first."""

    async def insert() -> str:
        database = Database(server.database_url, poolclass=NullPool)
        try:
            async with database.serialized() as session:
                account = (
                    await session.execute(select(Account).where(Account.name == account_name))
                ).scalar_one()
                video = Video(
                    account_id=account.id, name="pending", file_name="source.mp4", size_bytes=1
                )
                session.add(video)
            return video.id
        finally:
            await database.dispose()

    return asyncio.run(insert())


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "metadata", None, id="get"),
        pytest.param("PATCH", "metadata", {"variables": []}, id="patch"),
        pytest.param("PATCH", "objects/o1", {"userLabel": "x"}, id="object"),
    ],
)
def test_video_without_version_not_ready(server, method, path, body):  # type: ignore[no-untyped-def]
    key = server.create_key("*", account="metadata-pending")
    video_id = _insert_uploading_video(server, "metadata-pending")

    with server.client(key) as client:
        response = client.request(method, f"/api/videos/{video_id}/{path}", json=body)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_READY"
    assert response.json()["error"]["details"] == {"status": "uploading"}


def test_versions_of_video_without_version_empty(server):  # type: ignore[no-untyped-def]
    key = server.create_key("*", account="metadata-pending")
    video_id = _insert_uploading_video(server, "metadata-pending")

    with server.client(key) as client:
        response = client.get(f"/api/videos/{video_id}/versions")

    assert response.json() == {"versions": [], "currentVersion": 0}


def _random_patch(rng: random.Random, document: dict[str, Any], step: int) -> dict[str, Any]:
    """A patch of one of several kinds, chosen to touch every part a client can change."""
    overlays = document["layers"][0]["overlays"]
    manual = [oid for oid, obj in document["objects"].items() if obj["source"] == "manual"]
    choice = rng.choice(
        ["add", "add", "move", "delete", "variable", "object", "label", "drop-object", "settings"]
    )
    if choice == "move" and overlays:
        target = rng.choice(overlays)["id"]
        return {
            "layers": [{"id": "layer_main", "overlays": [{"id": target, "position": {"x": 0.1}}]}]
        }
    if choice == "delete" and overlays:
        target = rng.choice(overlays)["id"]
        return {"layers": [{"id": "layer_main", "overlays": [{"id": target, "$patch": "delete"}]}]}
    if choice == "variable":
        return {"variables": [{"id": f"v{step % 4}", "type": "number", "value": step}]}
    if choice == "object":
        new_object = {"id": f"m{step}", "kind": "box", "source": "manual", "label": "thing"}
        return {"objects": {f"m{step}": new_object}}
    if choice == "label" and manual:
        return {
            "objects": {
                rng.choice(manual): {"userLabel": f"label {step}", "customData": {"n": step}}
            }
        }
    if choice == "drop-object" and manual:
        return {"objects": {rng.choice(manual): None}}
    if choice == "settings":
        return {"settings": {"restrictions": {"seek": step % 2 == 0}, "step": step}}
    return add_overlay_patch(f"o{step}", x=round(rng.random(), 3))


def test_get_each_version_after_100_mixed_edits(client, video_id):  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    expected = {1: client.get(f"/api/videos/{video_id}/metadata").json()}
    document = expected[1]
    version = 1

    for step in range(100):
        patch = _random_patch(rng, document, step)
        response = client.patch(f"/api/videos/{video_id}/metadata", json=patch)
        assert response.status_code == 200, response.text
        new_document = merge_patch(document, patch)
        if canonical(new_document) != canonical(document):
            version += 1
        document = new_document
        assert response.json()["version"] == version
        expected[version] = document

    assert version > 80
    for number, snapshot in expected.items():
        response = client.get(f"/api/videos/{video_id}/metadata", params={"version": number})
        assert response.headers["etag"] == f'"{number}"'
        assert canonical(response.json()) == canonical(snapshot), f"version {number}"


METADATA_QUERY = "query($id: ID!, $version: Int) { metadata(videoId: $id, version: $version) }"
PATCH_MUTATION = (
    "mutation($id: ID!, $patch: JSON!, $ifMatch: Int, $description: String) {"
    " patchMetadata(videoId: $id, patch: $patch, ifMatch: $ifMatch, description: $description)"
    " { success version updatedAt description created } }"
)
RESTORE_MUTATION = (
    "mutation($id: ID!, $version: Int!) {"
    " restoreMetadataVersion(videoId: $id, version: $version) { version description created } }"
)
VERSIONS_QUERY = (
    "query($id: ID!) { metadataVersions(videoId: $id)"
    " { currentVersion versions { version description author createdAt } } }"
)


def test_graphql_patch_and_read_metadata(client, video_id):  # type: ignore[no-untyped-def]
    written = graphql(client, PATCH_MUTATION, id=video_id, patch=add_overlay_patch("g1"))
    read = graphql(client, METADATA_QUERY, id=video_id)
    first = graphql(client, METADATA_QUERY, id=video_id, version=1)

    assert written["data"]["patchMetadata"] == {
        "success": True,
        "version": 2,
        "updatedAt": written["data"]["patchMetadata"]["updatedAt"],
        "description": "Added overlay g1 to layer layer_main",
        "created": True,
    }
    rest = client.get(f"/api/videos/{video_id}/metadata").json()
    assert read["data"]["metadata"] == rest
    assert first["data"]["metadata"]["layers"][0]["overlays"] == []


def test_graphql_patch_stale_if_match(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    body = graphql(
        client, PATCH_MUTATION, id=unchanged_video_id, patch={"settings": {"a": 1}}, ifMatch=4
    )

    error = body["errors"][0]["extensions"]
    assert error["code"] == "VERSION_CONFLICT"
    assert error["details"] == {"expected": 4, "current": 1}


@pytest.mark.parametrize(
    ("raw_patch", "field"),
    [
        pytest.param('{"settings": {"volume": NaN}}', "settings.volume", id="nan"),
        pytest.param('{"settings": {"volume": Infinity}}', "settings.volume", id="infinity"),
        pytest.param(
            '{"settings": ' + '{"a": ' * 40 + "1" + "}" * 41, "settings" + ".a" * 31, id="deep"
        ),
        pytest.param('["a"]', None, id="array"),
    ],
)
def test_graphql_patch_rejects_bad_values(client, unchanged_video_id, raw_patch, field):  # type: ignore[no-untyped-def]
    # The patch is spliced in as text, because NaN and Infinity are not JSON.
    query = json.dumps(PATCH_MUTATION)
    payload = (
        f'{{"query": {query}, "variables": {{"id": "{unchanged_video_id}", "patch": {raw_patch}}}}}'
    )

    response = client.post(
        "/graphql", content=payload, headers={"Content-Type": "application/json"}
    )

    error = response.json()["errors"][0]["extensions"]
    assert error["code"] == "INVALID_PARAMETER"
    assert error["field"] == field
    assert version_count(client, unchanged_video_id) == 1


def test_graphql_restore_version_as_new_version(client, video_id):  # type: ignore[no-untyped-def]
    client.patch(f"/api/videos/{video_id}/metadata", json=add_overlay_patch("a"))
    client.patch(
        f"/api/videos/{video_id}/metadata",
        json={"variables": [{"id": "v", "type": "string", "value": "x"}]},
    )

    restored = graphql(client, RESTORE_MUTATION, id=video_id, version=1)
    history = graphql(client, VERSIONS_QUERY, id=video_id)

    assert restored["data"]["restoreMetadataVersion"] == {
        "version": 4,
        "description": "Restored version 1",
        "created": True,
    }
    first = client.get(f"/api/videos/{video_id}/metadata", params={"version": 1}).json()
    current = client.get(f"/api/videos/{video_id}/metadata")
    assert current.headers["etag"] == '"4"'
    assert canonical(current.json()) == canonical(first)
    versions = history["data"]["metadataVersions"]
    assert versions["currentVersion"] == 4
    assert [v["version"] for v in versions["versions"]] == [4, 3, 2, 1]


def test_graphql_restore_unknown_version(client, unchanged_video_id):  # type: ignore[no-untyped-def]
    body = graphql(client, RESTORE_MUTATION, id=unchanged_video_id, version=9)

    error = body["errors"][0]["extensions"]
    assert error["code"] == "NOT_FOUND"
    assert error["field"] == "version"
    assert version_count(client, unchanged_video_id) == 1
