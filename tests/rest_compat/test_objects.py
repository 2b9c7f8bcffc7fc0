"""Tracked objects over REST and GraphQL: summaries, edits, deletion and shared track storage.

Objects with tracks come from processing. These tests write such a version straight into the
server's database with the metadata store, the way the processing worker stores its results.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from mp4e.db import Database
from mp4e.metadata.document import build_box_track, build_surface_track, validate_document
from mp4e.models import Blob, Video
from mp4e.services import metadata_store


def upload_ready(client: httpx.Client, path: Path, wait_for: Callable[..., Any]) -> str:
    """Upload a video and wait until its first metadata version exists."""
    with path.open("rb") as handle:
        response = client.post("/api/videos/upload", files={"file": ("clip.mp4", handle)})
    assert response.status_code == 201, response.text
    video_id: str = response.json()["id"]
    wait_for(lambda: client.get(f"/api/videos/{video_id}/metadata").status_code == 200, 60)
    return video_id


def box_object(object_id: str, frames: list[int], label: str) -> dict[str, Any]:
    frame_array = np.asarray(frames)
    boxes = np.column_stack(
        [
            0.1 + frame_array * 0.01,
            np.full(len(frames), 0.2),
            0.3 + frame_array * 0.01,
            [0.6] * len(frames),
        ]
    )
    scores = np.linspace(0.9, 0.7, len(frames))
    return {
        "id": object_id,
        "label": label,
        "customData": {"sku": "A-1", "tags": ["x"]},
        "kind": "box",
        "source": "ai",
        "track": build_box_track(frames, frame_array / 10.0, boxes, scores),
    }


def surface_object(object_id: str) -> dict[str, Any]:
    corners = [[[0.2, 0.3], [0.8, 0.3], [0.8, 0.7], [0.2, 0.7]]] * 4
    return {
        "id": object_id,
        "name": "TV Screen",
        "kind": "surface",
        "source": "surface",
        "track": build_surface_track([2, 3, 4, 5], [0.2, 0.3, 0.4, 0.5], corners, [1, 1, 0, 1]),
    }


def store_version(server, video_id: str, change: Callable[[dict[str, Any]], None]) -> int:  # type: ignore[no-untyped-def]
    """Apply `change` to the current document and store the result as the next version."""

    async def store() -> int:
        database = Database(server.database_url, poolclass=NullPool)
        try:
            async with database.serialized() as session:
                video = await session.get(Video, video_id, with_for_update=not database.is_sqlite)
                assert video is not None
                row = await metadata_store.get_version_row(session, video_id, video.current_version)
                document = copy.deepcopy(await metadata_store.load_document(session, row))
                change(document)
                validate_document(document)
                await metadata_store.add_version(
                    session,
                    video_id=video_id,
                    version=video.current_version + 1,
                    document=document,
                    description="Stored test objects",
                    author="test",
                    previous=row,
                )
                video.current_version += 1
                session.add(video)
            return video.current_version
        finally:
            await database.dispose()

    return asyncio.run(store())


def blob_count(server, video_id: str) -> int:  # type: ignore[no-untyped-def]
    async def count() -> int:
        database = Database(server.database_url, poolclass=NullPool)
        try:
            async with database.session() as session:
                query = select(func.count()).select_from(Blob).where(Blob.video_id == video_id)
                return int((await session.execute(query)).scalar_one())
        finally:
            await database.dispose()

    return asyncio.run(count())


def add_tracked_objects(document: dict[str, Any]) -> None:
    document["objects"]["obj_001"] = box_object("obj_001", [0, 1, 2, 3, 5], "person")
    document["objects"]["obj_002"] = box_object("obj_002", [4, 6], "laptop")
    document["objects"]["surface_001"] = surface_object("surface_001")
    document["layers"][0]["overlays"] = [
        {
            "id": "follow",
            "name": "Follow",
            "position": {"x": 0.5, "y": 0.5},
            "plugin": {"type": "core:label", "config": {}},
            "objectId": "obj_002",
        },
        {
            "id": "fixed",
            "name": "Fixed",
            "position": {"x": 0.1, "y": 0.1},
            "plugin": {"type": "core:button", "config": {}},
        },
    ]
    document["groups"] = [{"id": "g1", "name": "Things", "objectIds": ["obj_001", "obj_002"]}]


@pytest.fixture(scope="module")
def client(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    with server.client(server.create_key("*", account="object-tests")) as client:
        yield client


@pytest.fixture
def video_id(server, client, sample_video, wait_for) -> str:  # type: ignore[no-untyped-def]
    """A new video whose version 2 has two box objects, a surface, overlays and a group."""
    video_id = upload_ready(client, sample_video, wait_for)
    store_version(server, video_id, add_tracked_objects)
    return video_id


def versions(client: httpx.Client, video_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = client.get(f"/api/videos/{video_id}/versions").json()["versions"]
    return result


def test_list_objects_summarizes_tracks(client, video_id):  # type: ignore[no-untyped-def]
    response = client.get(f"/api/videos/{video_id}/objects")

    assert response.status_code == 200
    objects = response.json()["objects"]
    assert objects == [
        {
            "id": "obj_001",
            "label": "person",
            "userLabel": None,
            "name": None,
            "confidence": 0.8,
            "firstFrame": 0,
            "lastFrame": 5,
            "frameCount": 5,
            "kind": "box",
            "source": "ai",
        },
        {
            "id": "obj_002",
            "label": "laptop",
            "userLabel": None,
            "name": None,
            "confidence": 0.8,
            "firstFrame": 4,
            "lastFrame": 6,
            "frameCount": 2,
            "kind": "box",
            "source": "ai",
        },
        {
            "id": "surface_001",
            "label": None,
            "userLabel": None,
            "name": "TV Screen",
            "confidence": None,
            "firstFrame": 2,
            "lastFrame": 5,
            "frameCount": 3,
            "kind": "surface",
            "source": "surface",
        },
    ]


def test_update_object_merges_custom_data(client, video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{video_id}/objects/obj_002",
        json={"userLabel": "MacBook Pro M3", "customData": {"price": 1999, "sku": None}},
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    body = response.json()
    assert body["success"] is True
    assert body["object"]["id"] == "obj_002"
    assert body["object"]["label"] == "laptop"
    assert body["object"]["userLabel"] == "MacBook Pro M3"
    assert body["object"]["customData"] == {"tags": ["x"], "price": 1999}
    assert versions(client, video_id)[0]["description"] == (
        "Updated object obj_002 (customData, userLabel)"
    )
    document = client.get(f"/api/videos/{video_id}/metadata").json()
    assert document["objects"]["obj_002"]["userLabel"] == "MacBook Pro M3"
    assert document["objects"]["obj_002"]["track"]["frames"] == [4, 6]


def test_update_object_stores_no_track_again(server, client, video_id):  # type: ignore[no-untyped-def]
    before = blob_count(server, video_id)

    client.patch(f"/api/videos/{video_id}/objects/obj_001", json={"userLabel": "Host"})

    # One new object blob and one new manifest. The tracks are shared with version 2.
    assert blob_count(server, video_id) == before + 2


def test_patch_overlay_stores_no_blob(server, client, video_id):  # type: ignore[no-untyped-def]
    before = blob_count(server, video_id)
    patch = {
        "layers": [{"id": "layer_main", "overlays": [{"id": "fixed", "position": {"x": 0.3}}]}]
    }

    response = client.patch(f"/api/videos/{video_id}/metadata", json=patch)

    assert response.status_code == 200
    assert blob_count(server, video_id) == before
    tracks = client.get(f"/api/videos/{video_id}/metadata").json()["objects"]["obj_001"]["track"]
    assert tracks["frames"] == [0, 1, 2, 3, 5]


def test_update_object_unchanged_adds_no_version(client, video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{video_id}/objects/obj_001", json={"customData": {"sku": "A-1"}}
    )

    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert len(versions(client, video_id)) == 2


@pytest.mark.parametrize(
    ("object_id", "body", "status", "code", "field"),
    [
        pytest.param("obj_404", {"userLabel": "x"}, 404, "NOT_FOUND", "objectId", id="unknown"),
        pytest.param("obj_001", {"label": "cat"}, 400, "INVALID_PARAMETER", "label", id="label"),
        pytest.param("obj_001", {"track": None}, 400, "INVALID_PARAMETER", "track", id="track"),
        pytest.param("obj_001", {}, 400, "INVALID_PARAMETER", None, id="empty"),
        pytest.param("obj_001", {"userLabel": 5}, 400, "INVALID_PARAMETER", "userLabel", id="int"),
        pytest.param(
            "obj_001", {"customData": [1]}, 400, "INVALID_PARAMETER", "customData", id="array"
        ),
    ],
)
def test_update_object_rejects(client, video_id, object_id, body, status, code, field):  # type: ignore[no-untyped-def]
    response = client.patch(f"/api/videos/{video_id}/objects/{object_id}", json=body)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert len(versions(client, video_id)) == 2


def test_update_object_rejects_nan_in_custom_data(client, video_id):  # type: ignore[no-untyped-def]
    response = client.patch(
        f"/api/videos/{video_id}/objects/obj_001",
        content=b'{"customData": {"price": NaN}}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "customData.price"


def test_delete_object_removes_bound_overlays(client, video_id):  # type: ignore[no-untyped-def]
    response = client.delete(f"/api/videos/{video_id}/objects/obj_002")

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response.headers["etag"] == '"3"'
    document = client.get(f"/api/videos/{video_id}/metadata").json()
    assert sorted(document["objects"]) == ["obj_001", "surface_001"]
    assert [o["id"] for o in document["layers"][0]["overlays"]] == ["fixed"]
    assert document["groups"][0]["objectIds"] == ["obj_001"]
    assert versions(client, video_id)[0]["description"] == (
        "Removed object obj_002, updated group g1 (objectIds) and removed overlay follow from "
        "layer layer_main"
    )


def test_delete_unknown_object_not_found(client, video_id):  # type: ignore[no-untyped-def]
    response = client.delete(f"/api/videos/{video_id}/objects/obj_404")

    assert response.status_code == 404
    assert response.json()["error"]["field"] == "objectId"
    assert len(versions(client, video_id)) == 2


def test_patch_may_send_track_back_unchanged(client, video_id):  # type: ignore[no-untyped-def]
    document = client.get(f"/api/videos/{video_id}/metadata").json()
    document["settings"] = {"theme": "dark"}

    response = client.patch(f"/api/videos/{video_id}/metadata", json=document)

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 3
    assert versions(client, video_id)[0]["description"] == "Updated settings (theme)"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param(
            {"objects": {"obj_001": {"track": {"frames": [0]}}}},
            "objects.obj_001.track.frames",
            id="change-track",
        ),
        pytest.param(
            {"objects": {"obj_001": {"track": None}}}, "objects.obj_001.track", id="drop-track"
        ),
        pytest.param(
            {"objects": {"obj_001": {"frameCount": 1}}}, "objects.obj_001.frameCount", id="count"
        ),
    ],
)
def test_patch_rejects_track_changes(client, video_id, patch, field):  # type: ignore[no-untyped-def]
    response = client.patch(f"/api/videos/{video_id}/metadata", json=patch)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "READ_ONLY_FIELD"
    assert response.json()["error"]["field"] == field
    assert len(versions(client, video_id)) == 2


OBJECTS_QUERY = (
    "query($id: ID!) { objects(videoId: $id) { id label userLabel confidence firstFrame"
    " lastFrame frameCount kind source customData track } }"
)
UPDATE_MUTATION = (
    "mutation($id: ID!, $object: String!, $label: String, $data: JSON) {"
    " updateObject(videoId: $id, objectId: $object, userLabel: $label, customData: $data)"
    " { success version object { id userLabel customData track } } }"
)
DELETE_MUTATION = (
    "mutation($id: ID!, $object: String!) { deleteObject(videoId: $id, objectId: $object)"
    " { success version removedOverlayIds } }"
)


def graphql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_graphql_objects_with_tracks(client, video_id):  # type: ignore[no-untyped-def]
    body = graphql(client, OBJECTS_QUERY, id=video_id)

    objects = body["data"]["objects"]
    assert [o["id"] for o in objects] == ["obj_001", "obj_002", "surface_001"]
    assert objects[1]["customData"] == {"sku": "A-1", "tags": ["x"]}
    assert objects[1]["track"]["frames"] == [4, 6]
    assert len(objects[1]["track"]["boxes"]) == 8
    assert objects[2]["track"]["visible"] == [1, 1, 0, 1]


def test_graphql_update_object(client, video_id):  # type: ignore[no-untyped-def]
    body = graphql(
        client, UPDATE_MUTATION, id=video_id, object="obj_001", label="Host", data={"tags": None}
    )

    result = body["data"]["updateObject"]
    assert result["version"] == 3
    assert result["object"]["userLabel"] == "Host"
    assert result["object"]["customData"] == {"sku": "A-1"}
    assert result["object"]["track"]["frames"] == [0, 1, 2, 3, 5]


def test_graphql_update_object_clears_label(client, video_id):  # type: ignore[no-untyped-def]
    graphql(client, UPDATE_MUTATION, id=video_id, object="obj_001", label="Host")

    body = graphql(client, UPDATE_MUTATION, id=video_id, object="obj_001", label=None)

    assert body["data"]["updateObject"]["object"]["userLabel"] is None
    assert body["data"]["updateObject"]["version"] == 4


def test_graphql_update_object_rejects_nan(client, video_id):  # type: ignore[no-untyped-def]
    query = json.dumps(UPDATE_MUTATION)
    payload = (
        f'{{"query": {query}, "variables": {{"id": "{video_id}", "object": "obj_001",'
        f' "data": {{"price": NaN}}}}}}'
    )

    response = client.post(
        "/graphql", content=payload, headers={"Content-Type": "application/json"}
    )

    error = response.json()["errors"][0]["extensions"]
    assert error["code"] == "INVALID_PARAMETER"
    assert error["field"] == "customData.price"


def test_graphql_delete_object(client, video_id):  # type: ignore[no-untyped-def]
    body = graphql(client, DELETE_MUTATION, id=video_id, object="obj_002")

    assert body["data"]["deleteObject"] == {
        "success": True,
        "version": 3,
        "removedOverlayIds": ["follow"],
    }
