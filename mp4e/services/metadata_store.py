"""Storage of metadata versions with structural sharing.

A version row stores every top-level key except `objects`. Objects live in content-addressed
blobs: a manifest blob maps object ids to object blobs, and each object blob names the blob of
its per-frame track under `TRACK_REF`. A version that changes no object reuses the previous
manifest, and a version that changes one object's `userLabel` stores one small object blob and a
new manifest; tracks are stored once and shared by every version that does not change them.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mp4e.errors import NotFound
from mp4e.models import Blob, MetadataVersion

TRACK_REF = "$trackBlob"

_CACHE_SIZE = 256


def encode_json(value: Any) -> bytes:
    """Encode JSON compactly and deterministically, so equal content hashes equally."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _BlobCache:
    """Decoded blobs of this process, keyed by (video id, digest); blobs never change."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Any | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > _CACHE_SIZE * 64:
            self._items.popitem(last=False)

    def drop_video(self, video_id: str) -> None:
        for key in [k for k in self._items if k[0] == video_id]:
            del self._items[key]


blob_cache = _BlobCache()


async def _put_blob(session: AsyncSession, video_id: str, value: Any) -> str:
    data = encode_json(value)
    digest = _digest(data)
    if blob_cache.get((video_id, digest)) is None:
        existing = await session.get(Blob, (video_id, digest))
        if existing is None:
            session.add(Blob(video_id=video_id, sha256=digest, data=data, size_bytes=len(data)))
            await session.flush()
        blob_cache.put((video_id, digest), value)
    return digest


async def _get_blobs(session: AsyncSession, video_id: str, digests: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    missing: list[str] = []
    for digest in digests:
        value = blob_cache.get((video_id, digest))
        if value is None:
            missing.append(digest)
        else:
            found[digest] = value
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        rows = await session.execute(
            select(Blob.sha256, Blob.data).where(Blob.video_id == video_id, Blob.sha256.in_(chunk))
        )
        for digest, data in rows.all():
            value = json.loads(data)
            blob_cache.put((video_id, digest), value)
            found[digest] = value
    absent = set(digests) - found.keys()
    if absent:
        raise RuntimeError(f"Metadata blobs are missing for video {video_id}: {sorted(absent)}")
    return found


async def store_objects(
    session: AsyncSession, video_id: str, objects: dict[str, Any], previous_hash: str | None
) -> str:
    """Store `objects` and return its manifest digest, writing only blobs not yet stored."""
    manifest: dict[str, str] = {}
    for object_id, obj in objects.items():
        body = dict(obj)
        track = body.pop("track", None)
        if track is not None:
            body[TRACK_REF] = await _put_blob(session, video_id, track)
        manifest[object_id] = await _put_blob(session, video_id, body)
    return await _put_blob(session, video_id, manifest)


async def load_objects(
    session: AsyncSession, video_id: str, objects_hash: str, *, with_tracks: bool = True
) -> dict[str, Any]:
    """Rebuild the `objects` record of a version. Without tracks, `track` is left out."""
    manifest = (await _get_blobs(session, video_id, [objects_hash]))[objects_hash]
    bodies = await _get_blobs(session, video_id, list(manifest.values()))
    track_digests = [b[TRACK_REF] for b in bodies.values() if TRACK_REF in b]
    tracks = await _get_blobs(session, video_id, track_digests) if with_tracks else {}
    objects: dict[str, Any] = {}
    for object_id, digest in manifest.items():
        body = dict(bodies[digest])
        track_digest = body.pop(TRACK_REF, None)
        if with_tracks and track_digest is not None:
            body["track"] = tracks[track_digest]
        objects[object_id] = body
    return objects


async def get_version_row(
    session: AsyncSession, video_id: str, version: int | None, *, for_update: bool = False
) -> MetadataVersion:
    """Return the row of `version` (the newest when None); `NotFound` when there is none."""
    query = select(MetadataVersion).where(MetadataVersion.video_id == video_id)
    if version is None:
        query = query.order_by(MetadataVersion.version.desc()).limit(1)  # type: ignore[attr-defined]
    else:
        query = query.where(MetadataVersion.version == version)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(
            f"Metadata version {version} of video '{video_id}' was not found.",
            field="version",
            details={"videoId": video_id, "version": version},
        )
    return row


async def load_document(
    session: AsyncSession, row: MetadataVersion, *, with_tracks: bool = True
) -> dict[str, Any]:
    """Assemble the full document of a version row."""
    document = dict(row.document)
    objects = await load_objects(session, row.video_id, row.objects_hash, with_tracks=with_tracks)
    ordered: dict[str, Any] = {}
    for key in ("schemaVersion", "videoDetails"):
        if key in document:
            ordered[key] = document.pop(key)
    ordered["objects"] = objects
    ordered.update(document)
    return ordered


async def add_version(
    session: AsyncSession,
    *,
    video_id: str,
    version: int,
    document: dict[str, Any],
    description: str,
    author: str | None,
    previous: MetadataVersion | None,
    objects_changed: bool = True,
) -> MetadataVersion:
    """Insert version `version` holding `document`.

    When `objects_changed` is False the previous manifest is reused without touching the
    objects (which may then be given without tracks).
    """
    top_level = {k: v for k, v in document.items() if k != "objects"}
    if objects_changed or previous is None:
        objects_hash = await store_objects(
            session,
            video_id,
            document.get("objects", {}),
            previous.objects_hash if previous else None,
        )
    else:
        objects_hash = previous.objects_hash
    row = MetadataVersion(
        video_id=video_id,
        version=version,
        document=top_level,
        objects_hash=objects_hash,
        description=description,
        author=author,
    )
    session.add(row)
    await session.flush()
    return row
