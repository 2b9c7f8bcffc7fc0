"""Tracked objects of a video's document: summaries, edits and deletion.

Edits go through `metadata.apply_change`, so each one is a new metadata version with a
generated description, written under the same lock as every other metadata write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mp4e.auth import Principal, Scope
from mp4e.errors import InvalidParameter, NotFound
from mp4e.metadata.jsonlimits import json_type_name
from mp4e.metadata.merge import DELETE, PATCH_DIRECTIVE
from mp4e.runtime import Runtime
from mp4e.services import metadata_store
from mp4e.services.metadata import apply_change
from mp4e.services.videos import get_video

# Object fields a client may set through the objects endpoint, and the JSON types allowed.
WRITABLE_FIELDS: Final = {
    "userLabel": ("string", "null"),
    "name": ("string", "null"),
    "customData": ("object", "null"),
}


@dataclass(frozen=True)
class ObjectSummary:
    """An object of one metadata version without its track, which `load_object_track` reads."""

    video_id: str
    version: int
    id: str
    label: str | None
    user_label: str | None
    name: str | None
    confidence: float | None
    first_frame: int | None
    last_frame: int | None
    frame_count: int | None
    kind: str | None
    source: str | None
    custom_data: dict[str, Any]
    has_track: bool


@dataclass(frozen=True)
class ObjectUpdate:
    object: ObjectSummary
    version: int


@dataclass(frozen=True)
class ObjectDeletion:
    version: int
    removed_overlay_ids: list[str]


def summarize_object(
    video_id: str, version: int, body: dict[str, Any], *, has_track: bool
) -> ObjectSummary:
    """Build the summary of an object from its stored fields."""
    return ObjectSummary(
        video_id=video_id,
        version=version,
        id=body["id"],
        label=body.get("label"),
        user_label=body.get("userLabel"),
        name=body.get("name"),
        confidence=body.get("confidence"),
        first_frame=body.get("firstFrame"),
        last_frame=body.get("lastFrame"),
        frame_count=body.get("frameCount"),
        kind=body.get("kind"),
        source=body.get("source"),
        custom_data=body.get("customData") or {},
        has_track=has_track or body.get("track") is not None,
    )


async def list_objects(
    runtime: Runtime, principal: Principal, video_id: str
) -> list[ObjectSummary]:
    """Return the objects of the current version in document order, without loading tracks.

    A video still ingesting has no objects yet, so the list is empty.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_READ)
    if video.current_version == 0:
        return []
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, None)
        editable = await metadata_store.load_editable(session, row)
    return [
        summarize_object(video.id, row.version, body, has_track=oid in editable.track_digests)
        for oid, body in editable.document["objects"].items()
    ]


async def load_object_track(runtime: Runtime, summary: ObjectSummary) -> Any | None:
    """Return the track of a summarized object, decoded, or None when it has none."""
    if not summary.has_track:
        return None
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, summary.video_id, summary.version)
        editable = await metadata_store.load_editable(session, row)
        digest = editable.track_digests.get(summary.id)
        if digest is None:
            return None
        return await metadata_store.load_track(session, summary.video_id, digest)


async def update_object(
    runtime: Runtime,
    principal: Principal,
    video_id: str,
    object_id: str,
    changes: Mapping[str, Any],
) -> ObjectUpdate:
    """Set `userLabel`, `name` or `customData` of an object, as a new metadata version.

    `customData` is merged into the current record: keys it names are set, keys set to null
    are deleted, others are kept. `null` for `userLabel` or `name` removes that field. A change
    that leaves the object as it was adds no version.

    Raises:
        NotFound: the object does not exist (field "objectId").
        InvalidParameter: `changes` is empty, names another field, or has a wrong type.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_WRITE)
    _check_changes(changes)

    def build_patch(current: dict[str, Any]) -> dict[str, Any]:
        _require_object(current, video.id, object_id)
        return {"objects": {object_id: dict(changes)}}

    result = await apply_change(runtime, principal, video.id, build_patch, None, None)
    body = result.document["objects"][object_id]
    has_track = object_id in result.tracked_object_ids
    summary = summarize_object(video.id, result.version, body, has_track=has_track)
    return ObjectUpdate(object=summary, version=result.version)


async def delete_object(
    runtime: Runtime, principal: Principal, video_id: str, object_id: str
) -> ObjectDeletion:
    """Delete an object with its track, as a new metadata version.

    The overlays bound to the object (`objectId`) are deleted with it, since they would have
    nothing to follow, and the object's id is removed from the `objectIds` of every group.

    Raises:
        NotFound: the object does not exist (field "objectId").
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_WRITE)
    removed_overlay_ids: list[str] = []

    def build_patch(current: dict[str, Any]) -> dict[str, Any]:
        _require_object(current, video.id, object_id)
        removed_overlay_ids.clear()
        patch: dict[str, Any] = {"objects": {object_id: None}}

        layer_patches = []
        for layer in current["layers"]:
            bound = [o["id"] for o in layer.get("overlays", []) if o.get("objectId") == object_id]
            if bound:
                deletions = [{"id": oid, PATCH_DIRECTIVE: DELETE} for oid in bound]
                layer_patches.append({"id": layer["id"], "overlays": deletions})
                removed_overlay_ids.extend(bound)
        if layer_patches:
            patch["layers"] = layer_patches

        group_patches = [
            {"id": group["id"], "objectIds": [i for i in group["objectIds"] if i != object_id]}
            for group in current["groups"]
            if object_id in group.get("objectIds", [])
        ]
        if group_patches:
            patch["groups"] = group_patches
        return patch

    result = await apply_change(runtime, principal, video.id, build_patch, None, None)
    return ObjectDeletion(version=result.version, removed_overlay_ids=list(removed_overlay_ids))


def _require_object(document: dict[str, Any], video_id: str, object_id: str) -> None:
    if object_id not in document["objects"]:
        raise NotFound(
            f"Object '{object_id}' was not found in video '{video_id}'.",
            field="objectId",
            details={"videoId": video_id, "objectId": object_id},
        )


def _check_changes(changes: Mapping[str, Any]) -> None:
    allowed = ", ".join(WRITABLE_FIELDS)
    if not changes:
        raise InvalidParameter(
            f"Send at least one of the fields {allowed}.",
            details={"allowed": list(WRITABLE_FIELDS)},
        )
    for field, value in changes.items():
        types = WRITABLE_FIELDS.get(field)
        if types is None:
            raise InvalidParameter(
                f"The field '{field}' cannot be set here. Objects accept {allowed}.",
                field=field,
                details={"allowed": list(WRITABLE_FIELDS)},
            )
        provided = json_type_name(value)
        if provided not in types:
            expected = " or ".join(types)
            raise InvalidParameter(
                f"The field '{field}' must be {expected}, not {provided}.",
                field=field,
                details={"expected": expected, "provided": provided},
            )
