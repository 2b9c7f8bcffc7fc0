"""Storage of metadata versions with structural sharing.

A version row stores every top-level key except `objects`. Objects live in content-addressed
blobs: a manifest blob maps object ids to object blobs, and each object blob names the blob of
its per-frame track under `TRACK_REF`. A version that changes no object reuses the previous
manifest, and a version that changes one object's `userLabel` stores one small object blob and a
new manifest. Tracks are stored once and shared by every version that does not change them.

Blobs are immutable, so this process caches them: manifests and object blobs decoded, tracks as
their stored JSON bytes. `load_document_bytes` splices those bytes into the response, so reading
a document never decodes or re-encodes its tracks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from mp4e.errors import NotFound
from mp4e.metadata.document import summarize_track
from mp4e.models import Blob, MetadataVersion
from mp4e.models.base import utcnow

TRACK_REF: Final = "$trackBlob"

# Top-level keys in the order documents are returned. Unknown keys follow in stored order.
DOCUMENT_KEY_ORDER: Final = (
    "schemaVersion",
    "videoDetails",
    "objects",
    "groups",
    "layers",
    "variables",
    "rules",
    "scenes",
    "settings",
)

# The cache weighs raw track bytes by their length and decoded blobs by 4 times their encoded
# length, a rough allowance for the size of Python dicts and lists.
CACHE_MAX_BYTES: Final = 192 * 1024 * 1024
_DECODED_WEIGHT: Final = 4
_QUERY_CHUNK: Final = 500
_INSERT_CHUNK: Final = 50
_PENDING_KEY: Final = "mp4e_pending_blobs"


def encode_json(value: Any) -> bytes:
    """Encode JSON compactly, keeping key order, so a document reads back as it was written.

    Equal content in a different key order gets another digest, which costs one more blob but
    never a wrong read. Merges keep the key order of the current document, so this is rare.
    """
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


# orjson reads integers beyond 64 bits as floats, so text with such a digit run is parsed by
# the standard library instead. Floats as Python writes them have at most 17 digits.
_LONG_DIGIT_RUN: Final = re.compile(rb"\d{20}")


def decode_json(data: bytes) -> Any:
    """Decode stored JSON, with orjson (several times faster on tracks) where that is exact."""
    if _LONG_DIGIT_RUN.search(data):
        return json.loads(data)
    return orjson.loads(data)


def _encode_compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_CacheKey = tuple[str, str, bool]


class BlobCache:
    """Committed blobs of this process, keyed by (video id, digest, raw), least recent dropped.

    Raw entries are a track's stored JSON bytes, the others decoded JSON that callers must not
    change. Only committed blobs enter the cache, so a hit proves the blob is in the database.
    """

    def __init__(self, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._items: OrderedDict[_CacheKey, tuple[Any, int]] = OrderedDict()

    def get(self, video_id: str, digest: str, *, raw: bool) -> Any | None:
        key = (video_id, digest, raw)
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def contains(self, video_id: str, digest: str) -> bool:
        return (video_id, digest, True) in self._items or (video_id, digest, False) in self._items

    def put(self, video_id: str, digest: str, value: Any, *, raw: bool, data_bytes: int) -> None:
        weight = data_bytes if raw else data_bytes * _DECODED_WEIGHT
        if weight > self.max_bytes:
            return
        key = (video_id, digest, raw)
        previous = self._items.pop(key, None)
        if previous is not None:
            self.size_bytes -= previous[1]
        self._items[key] = (value, weight)
        self.size_bytes += weight
        while self.size_bytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self.size_bytes -= dropped

    def drop_video(self, video_id: str) -> None:
        for key in [key for key in self._items if key[0] == video_id]:
            self.size_bytes -= self._items.pop(key)[1]


blob_cache = BlobCache()


@dataclass(frozen=True)
class _NewBlob:
    data: bytes
    raw: bool


def _pending_blobs(session: AsyncSession) -> dict[tuple[str, str], _NewBlob]:
    """Return the blobs written in this transaction, which enter the cache when it commits."""
    sync_session = session.sync_session
    pending: dict[tuple[str, str], _NewBlob] | None = sync_session.info.get(_PENDING_KEY)
    if pending is None:
        pending = {}
        sync_session.info[_PENDING_KEY] = pending
        event.listen(sync_session, "after_commit", _cache_committed_blobs)
        event.listen(sync_session, "after_rollback", _forget_pending_blobs)
    return pending


def _cache_committed_blobs(sync_session: Session) -> None:
    pending: dict[tuple[str, str], _NewBlob] = sync_session.info.get(_PENDING_KEY, {})
    for (video_id, digest), blob in pending.items():
        value = blob.data if blob.raw else decode_json(blob.data)
        blob_cache.put(video_id, digest, value, raw=blob.raw, data_bytes=len(blob.data))
    pending.clear()


def _forget_pending_blobs(sync_session: Session) -> None:
    sync_session.info.get(_PENDING_KEY, {}).clear()


class _BlobWriter:
    """Collect the blobs of one version, then insert those the database does not hold yet."""

    def __init__(self, session: AsyncSession, video_id: str) -> None:
        self.session = session
        self.video_id = video_id
        self.new: dict[str, _NewBlob] = {}

    def add(self, value: Any, *, raw: bool = False) -> str:
        data = encode_json(value)
        digest = _digest(data)
        if digest not in self.new and not blob_cache.contains(self.video_id, digest):
            self.new[digest] = _NewBlob(data, raw)
        return digest

    async def flush(self) -> None:
        digests = list(self.new)
        stored: set[str] = set()
        for start in range(0, len(digests), _QUERY_CHUNK):
            chunk = digests[start : start + _QUERY_CHUNK]
            rows = await self.session.execute(
                select(col(Blob.sha256)).where(
                    col(Blob.video_id) == self.video_id, col(Blob.sha256).in_(chunk)
                )
            )
            stored.update(rows.scalars().all())

        missing = [digest for digest in digests if digest not in stored]
        now = utcnow()
        for start in range(0, len(missing), _INSERT_CHUNK):
            rows_to_insert = [
                {
                    "video_id": self.video_id,
                    "sha256": digest,
                    "data": self.new[digest].data,
                    "size_bytes": len(self.new[digest].data),
                    "created_at": now,
                }
                for digest in missing[start : start + _INSERT_CHUNK]
            ]
            await self.session.execute(self._insert_ignoring_duplicates(rows_to_insert))

        pending = _pending_blobs(self.session)
        for digest, blob in self.new.items():
            pending[(self.video_id, digest)] = blob

    def _insert_ignoring_duplicates(self, rows: list[dict[str, Any]]) -> Any:
        # Another writer may store the same content between the check and the insert.
        assert self.session.bind is not None
        if self.session.bind.dialect.name == "postgresql":
            return postgresql_insert(Blob).values(rows).on_conflict_do_nothing()
        return sqlite_insert(Blob).values(rows).on_conflict_do_nothing()


async def _fetch(session: AsyncSession, video_id: str, digests: Iterable[str]) -> dict[str, bytes]:
    unique_digests = list(dict.fromkeys(digests))
    found: dict[str, bytes] = {}
    for start in range(0, len(unique_digests), _QUERY_CHUNK):
        chunk = unique_digests[start : start + _QUERY_CHUNK]
        rows = await session.execute(
            select(col(Blob.sha256), col(Blob.data)).where(
                col(Blob.video_id) == video_id, col(Blob.sha256).in_(chunk)
            )
        )
        found.update((digest, bytes(data)) for digest, data in rows.all())
    absent = set(unique_digests) - found.keys()
    if absent:
        raise RuntimeError(f"Metadata blobs are missing for video {video_id}: {sorted(absent)}")
    return found


async def _get_blobs(
    session: AsyncSession, video_id: str, digests: Iterable[str], *, raw: bool
) -> dict[str, Any]:
    """Return blobs by digest, decoded unless `raw`, from the cache or else the database."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for digest in digests:
        value = blob_cache.get(video_id, digest, raw=raw)
        if value is None:
            missing.append(digest)
        else:
            found[digest] = value
    if not missing:
        return found

    for digest, data in (await _fetch(session, video_id, missing)).items():
        value = data if raw else decode_json(data)
        blob_cache.put(video_id, digest, value, raw=raw, data_bytes=len(data))
        found[digest] = value
    return found


async def _load_bodies(
    session: AsyncSession, video_id: str, objects_hash: str
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Return a version's manifest and its object blobs (with `TRACK_REF`), by digest."""
    manifest = (await _get_blobs(session, video_id, [objects_hash], raw=False))[objects_hash]
    bodies = await _get_blobs(session, video_id, manifest.values(), raw=False)
    return manifest, bodies


async def load_objects(
    session: AsyncSession, video_id: str, objects_hash: str, *, with_tracks: bool = True
) -> dict[str, Any]:
    """Rebuild the `objects` record of a version. Without tracks, `track` is left out.

    The result belongs to the caller, who may change it, because nothing in it is shared with
    the cache.
    """
    manifest, bodies = await _load_bodies(session, video_id, objects_hash)
    track_digests = [body[TRACK_REF] for body in bodies.values() if TRACK_REF in body]
    tracks = await _get_blobs(session, video_id, track_digests, raw=True) if with_tracks else {}

    objects: dict[str, Any] = {}
    for object_id, digest in manifest.items():
        body = {
            key: copy.deepcopy(value) for key, value in bodies[digest].items() if key != TRACK_REF
        }
        track_digest = bodies[digest].get(TRACK_REF)
        if with_tracks and track_digest is not None:
            body["track"] = decode_json(tracks[track_digest])
        objects[object_id] = body
    return objects


async def load_track(session: AsyncSession, video_id: str, track_digest: str) -> Any:
    """Return one stored track, decoded."""
    raw = await _get_blobs(session, video_id, [track_digest], raw=True)
    return decode_json(raw[track_digest])


async def get_version_row(
    session: AsyncSession, video_id: str, version: int | None, *, for_update: bool = False
) -> MetadataVersion:
    """Return the row of `version` (the newest when None); `NotFound` when there is none."""
    query = select(MetadataVersion).where(col(MetadataVersion.video_id) == video_id)
    if version is None:
        query = query.order_by(col(MetadataVersion.version).desc()).limit(1)
    else:
        query = query.where(col(MetadataVersion.version) == version)
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


def _ordered_keys(top_level: dict[str, Any]) -> list[str]:
    known = [key for key in DOCUMENT_KEY_ORDER if key == "objects" or key in top_level]
    return known + [key for key in top_level if key not in DOCUMENT_KEY_ORDER]


async def load_document(
    session: AsyncSession, row: MetadataVersion, *, with_tracks: bool = True
) -> dict[str, Any]:
    """Assemble the full document of a version row, keys in `DOCUMENT_KEY_ORDER`."""
    objects = await load_objects(session, row.video_id, row.objects_hash, with_tracks=with_tracks)
    top_level = row.document
    return {
        key: objects if key == "objects" else top_level[key] for key in _ordered_keys(top_level)
    }


async def load_document_bytes(session: AsyncSession, row: MetadataVersion) -> bytes:
    """Return the full document of a version row as compact UTF-8 JSON.

    The stored bytes of each track are copied into the output unparsed, so the cost grows with
    the number of objects and the size of the rest of the document, plus one copy of the
    track bytes. Each object's `track` comes last among its keys.
    """
    manifest, bodies = await _load_bodies(session, row.video_id, row.objects_hash)
    track_digests = [body[TRACK_REF] for body in bodies.values() if TRACK_REF in body]
    tracks = await _get_blobs(session, row.video_id, track_digests, raw=True)

    parts: list[bytes] = [b"{"]
    for index, key in enumerate(_ordered_keys(row.document)):
        if index:
            parts.append(b",")
        parts.append(_encode_compact(key) + b":")
        if key == "objects":
            parts.extend(_encode_objects(manifest, bodies, tracks))
        else:
            parts.append(_encode_compact(row.document[key]))
    parts.append(b"}")
    return b"".join(parts)


def _encode_objects(
    manifest: dict[str, str], bodies: dict[str, dict[str, Any]], tracks: dict[str, bytes]
) -> list[bytes]:
    parts = [b"{"]
    for index, (object_id, digest) in enumerate(manifest.items()):
        body = bodies[digest]
        fields = {key: value for key, value in body.items() if key != TRACK_REF}
        encoded = _encode_compact(fields)
        if index:
            parts.append(b",")
        parts.append(_encode_compact(object_id) + b":")
        track_digest = body.get(TRACK_REF)
        if track_digest is None:
            parts.append(encoded)
            continue
        # Reopen the encoded object to append the track: `{"a":1}` becomes `{"a":1,"track":...}`.
        parts.append(encoded[:-1])
        parts.append(b',"track":' if fields else b'"track":')
        parts.append(tracks[track_digest])
        parts.append(b"}")
    parts.append(b"}")
    return parts


@dataclass(frozen=True)
class EditableDocument:
    """A version's document with its tracks left in storage, ready for a patch.

    `document["objects"]` contains each object without `track`. `object_digests` names each
    object's blob and `track_digests` the track of each object that has one, so that
    `add_version(base=...)` re-stores only the objects a change touched and keeps their tracks.
    The values are shared with the cache: treat them as immutable, as `merge_patch` does.
    """

    row: MetadataVersion
    document: dict[str, Any]
    object_digests: dict[str, str]
    track_digests: dict[str, str]


async def load_editable(session: AsyncSession, row: MetadataVersion) -> EditableDocument:
    """Load a version for editing: the whole document except the tracks."""
    manifest, bodies = await _load_bodies(session, row.video_id, row.objects_hash)
    objects: dict[str, Any] = {}
    track_digests: dict[str, str] = {}
    for object_id, digest in manifest.items():
        body = bodies[digest]
        if TRACK_REF in body:
            track_digests[object_id] = body[TRACK_REF]
            body = {key: value for key, value in body.items() if key != TRACK_REF}
        objects[object_id] = body

    top_level = row.document
    document = {
        key: objects if key == "objects" else top_level[key] for key in _ordered_keys(top_level)
    }
    return EditableDocument(row, document, dict(manifest), track_digests)


async def with_tracks(
    session: AsyncSession, editable: EditableDocument, object_ids: Iterable[str]
) -> dict[str, Any]:
    """Return the editable document with the tracks of `object_ids` loaded into their objects.

    Other objects stay shared with `editable.document`. Ids without a stored track are skipped.
    """
    tracked_ids = [oid for oid in dict.fromkeys(object_ids) if oid in editable.track_digests]
    if not tracked_ids:
        return editable.document

    objects = dict(editable.document["objects"])
    for object_id in tracked_ids:
        track = await load_track(session, editable.row.video_id, editable.track_digests[object_id])
        objects[object_id] = {**objects[object_id], "track": track}
    return {**editable.document, "objects": objects}


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
    base: EditableDocument | None = None,
) -> MetadataVersion:
    """Insert version `version` holding `document`.

    When `objects_changed` is False the previous manifest is reused without touching the
    objects (which may then be given without tracks). With `base`, the editable form of
    `previous` that `document` was merged from, an object identical to its `base` object
    reuses that object's blob, and an object without a `track` key keeps its stored track.
    Without `base`, every object is stored as given, and one without `track` has no track.

    When an object comes with a track, its `firstFrame`, `lastFrame`, `frameCount` and (for
    box tracks with scores) `confidence` are recomputed from the track with `summarize_track`,
    so that object summaries can be listed without loading tracks. Only blobs the database
    does not hold yet are inserted.
    """
    top_level = {key: value for key, value in document.items() if key != "objects"}
    if objects_changed or previous is None:
        objects_hash = await _store_objects(session, video_id, document.get("objects", {}), base)
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


async def _store_objects(
    session: AsyncSession,
    video_id: str,
    objects: dict[str, Any],
    base: EditableDocument | None,
) -> str:
    writer = _BlobWriter(session, video_id)
    base_objects: dict[str, Any] = base.document["objects"] if base is not None else {}
    manifest: dict[str, str] = {}
    for object_id, obj in objects.items():
        if base is not None and obj is base_objects.get(object_id):
            manifest[object_id] = base.object_digests[object_id]
            continue

        body = dict(obj)
        if "track" in body:
            track = body.pop("track")
            if track is not None:
                body.update(_track_summary(track, body.get("kind")))
                body[TRACK_REF] = writer.add(track, raw=True)
        elif base is not None and object_id in base.track_digests:
            body[TRACK_REF] = base.track_digests[object_id]
        manifest[object_id] = writer.add(body)

    objects_hash = writer.add(manifest)
    await writer.flush()
    return objects_hash


def _track_summary(track: Any, kind: Any) -> dict[str, Any]:
    if kind not in ("box", "surface") or not isinstance(track, dict):
        return {}
    return summarize_track(track, kind)
