"""The version store on a real database (the test server's, both backends): structural sharing,
byte-exact reads, summaries and the blob cache."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool

from mp4e.db import Database
from mp4e.metadata.document import build_box_track, new_document, summarize_track
from mp4e.metadata.merge import merge_patch
from mp4e.models import Account, Blob, MetadataVersion, Video
from mp4e.services import metadata_store
from mp4e.services.metadata_store import BlobCache

DETAILS = {"totalFrames": 100, "fps": 10.0, "width": 160, "height": 120, "duration": 10.0}


def tracked_document() -> dict[str, Any]:
    document = new_document(DETAILS)
    for number, label in ((1, "person"), (2, "laptop")):
        frames = list(range(number, number + 20))
        boxes = [[0.1, 0.2, 0.3 + frame / 1000, 0.4] for frame in frames]
        document["objects"][f"obj_{number}"] = {
            "id": f"obj_{number}",
            "label": label,
            "kind": "box",
            "source": "ai",
            "customData": {"note": "café ☕", "nested": {"list": [1, 2.5, None, True]}},
            "track": build_box_track(frames, [f / 10 for f in frames], boxes, [0.5] * 20),
        }
        document["objects"][f"obj_{number}"].update(
            summarize_track(document["objects"][f"obj_{number}"]["track"], "box")
        )
    document["objects"]["manual_1"] = {"id": "manual_1", "kind": "box", "source": "manual"}
    document["settings"] = {"restrictions": {"seek": False}}
    return document


def run_with_database(server, scenario: Callable[[Database, str], Awaitable[Any]]) -> Any:  # type: ignore[no-untyped-def]
    """Run `scenario(database, video_id)` against a new video row in the server's database."""

    async def run() -> Any:
        database = Database(server.database_url, poolclass=NullPool)
        try:
            async with database.serialized() as session:
                account = Account(name=f"store-{secrets.token_hex(6)}")
                session.add(account)
                await session.flush()
                video = Video(account_id=account.id, name="v", file_name="x.mp4", size_bytes=1)
                session.add(video)
            return await scenario(database, video.id)
        finally:
            await database.dispose()

    return asyncio.run(run())


async def blob_count(session: AsyncSession, video_id: str) -> int:
    query = select(func.count()).select_from(Blob).where(Blob.video_id == video_id)
    return int((await session.execute(query)).scalar_one())


async def write(
    database: Database,
    video_id: str,
    version: int,
    document: dict[str, Any],
    previous: MetadataVersion | None,
    **options: Any,
) -> MetadataVersion:
    async with database.serialized() as session:
        return await metadata_store.add_version(
            session,
            video_id=video_id,
            version=version,
            document=document,
            description=f"v{version}",
            author="test",
            previous=previous,
            **options,
        )


async def read(database: Database, row: MetadataVersion, **options: Any) -> dict[str, Any]:
    async with database.session() as session:
        return await metadata_store.load_document(session, row, **options)


def test_add_version_shares_unchanged_parts(server):  # type: ignore[no-untyped-def]
    async def scenario(database: Database, video_id: str) -> dict[str, int]:
        v1 = await write(database, video_id, 1, tracked_document(), None)
        async with database.session() as session:
            after_v1 = await blob_count(session, video_id)
            editable = await metadata_store.load_editable(session, v1)

        overlay = {"id": "cta", "name": "Buy", "position": {"x": 0.5, "y": 0.5}}
        overlay["plugin"] = {"type": "core:button", "config": {}}
        moved = merge_patch(
            editable.document, {"layers": [{"id": "layer_main", "overlays": [overlay]}]}
        )
        v2 = await write(database, video_id, 2, moved, v1, objects_changed=False)
        async with database.session() as session:
            after_v2 = await blob_count(session, video_id)
            editable = await metadata_store.load_editable(session, v2)

        labelled = merge_patch(editable.document, {"objects": {"obj_1": {"userLabel": "Host"}}})
        v3 = await write(database, video_id, 3, labelled, v2, base=editable)
        async with database.session() as session:
            after_v3 = await blob_count(session, video_id)

        expected = tracked_document()
        assert await read(database, v1) == expected
        expected["layers"][0]["overlays"] = [overlay]
        assert await read(database, v2) == expected
        expected["objects"]["obj_1"]["userLabel"] = "Host"
        assert (await read(database, v3))["objects"] == expected["objects"]
        return {"v1": after_v1, "v2": after_v2 - after_v1, "v3": after_v3 - after_v2}

    counts = run_with_database(server, scenario)

    # Version 1 stores two tracks, three objects and a manifest. Version 2 stores no blob, and
    # version 3 one object and a manifest.
    assert counts == {"v1": 6, "v2": 0, "v3": 2}


def test_load_document_bytes_matches_document(server):  # type: ignore[no-untyped-def]
    async def scenario(database: Database, video_id: str) -> tuple[bytes, dict[str, Any]]:
        row = await write(database, video_id, 1, tracked_document(), None)
        async with database.session() as session:
            body = await metadata_store.load_document_bytes(session, row)
        return body, await read(database, row)

    body, document = run_with_database(server, scenario)

    assert json.loads(body) == document
    assert list(json.loads(body)) == list(document)
    assert "café ☕" in body.decode("utf-8")


def test_add_version_recomputes_summary(server):  # type: ignore[no-untyped-def]
    document = tracked_document()
    document["objects"]["obj_1"].update(firstFrame=50, lastFrame=60, frameCount=3, confidence=0.1)
    document["objects"]["obj_2"].pop("firstFrame")

    async def scenario(database: Database, video_id: str) -> dict[str, Any]:
        row = await write(database, video_id, 1, document, None)
        return await read(database, row, with_tracks=False)

    stored = run_with_database(server, scenario)["objects"]

    assert stored["obj_1"]["firstFrame"] == 1
    assert stored["obj_1"]["lastFrame"] == 20
    assert stored["obj_1"]["frameCount"] == 20
    assert stored["obj_1"]["confidence"] == 0.5
    assert stored["obj_2"]["firstFrame"] == 2
    assert "track" not in stored["obj_1"]


def test_with_tracks_loads_named_objects(server):  # type: ignore[no-untyped-def]
    async def scenario(database: Database, video_id: str) -> dict[str, Any]:
        row = await write(database, video_id, 1, tracked_document(), None)
        async with database.session() as session:
            editable = await metadata_store.load_editable(session, row)
            loaded = await metadata_store.with_tracks(session, editable, ["obj_2", "manual_1"])
        assert loaded["objects"]["obj_1"] is editable.document["objects"]["obj_1"]
        return loaded

    loaded = run_with_database(server, scenario)

    assert "track" not in loaded["objects"]["obj_1"]
    assert loaded["objects"]["obj_2"]["track"] == tracked_document()["objects"]["obj_2"]["track"]
    assert "track" not in loaded["objects"]["manual_1"]


def test_rolled_back_blobs_not_cached(server):  # type: ignore[no-untyped-def]
    document = tracked_document()
    document["settings"]["unique"] = "rolled back once"

    async def scenario(database: Database, video_id: str) -> dict[str, Any]:
        with pytest.raises(RuntimeError, match="abort"):
            async with database.serialized() as session:
                await metadata_store.add_version(
                    session,
                    video_id=video_id,
                    version=1,
                    document=copy.deepcopy(document),
                    description="v1",
                    author="test",
                    previous=None,
                )
                raise RuntimeError("abort")

        row = await write(database, video_id, 1, copy.deepcopy(document), None)
        return await read(database, row)

    assert run_with_database(server, scenario) == document


@pytest.mark.parametrize(
    ("entries", "kept"),
    [
        pytest.param([("a", 40, True), ("b", 40, True)], {"a", "b"}, id="fits"),
        pytest.param([("a", 40, True), ("b", 40, True), ("c", 40, True)], {"b", "c"}, id="lru"),
        pytest.param([("a", 10, False), ("b", 80, True)], {"b"}, id="decoded-weighs-more"),
        pytest.param([("a", 10, True), ("huge", 101, True)], {"a"}, id="too-large-skipped"),
    ],
)
def test_blob_cache_bounded_by_size(entries, kept):  # type: ignore[no-untyped-def]
    cache = BlobCache(max_bytes=100)

    for digest, size, raw in entries:
        cache.put("video", digest, digest, raw=raw, data_bytes=size)

    assert {digest for digest, _, _ in entries if cache.contains("video", digest)} == kept
    assert cache.size_bytes <= 100
