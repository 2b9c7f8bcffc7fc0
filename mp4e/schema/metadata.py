"""GraphQL queries and mutations for metadata documents, their versions and tracked objects.

Documents and tracks are returned as JSON values in their compact stored form (parallel arrays
per track), because typed objects per frame would make graphql-core walk every sample.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson
import strawberry

from mp4e.auth import Scope
from mp4e.errors import InvalidParameter
from mp4e.metadata.jsonlimits import DEFAULT_MAX_DEPTH, parse_json_body
from mp4e.runtime import Runtime
from mp4e.schema.context import Info
from mp4e.schema.scalars import JSON
from mp4e.services import metadata as metadata_service
from mp4e.services import objects as object_service
from mp4e.services import videos as video_service
from mp4e.services.metadata import VersionWrite
from mp4e.services.objects import ObjectSummary


@strawberry.type(name="MetadataVersion", description="One stored version of a document.")
class MetadataVersionInfo:
    version: int
    created_at: datetime
    description: str
    author: str | None = strawberry.field(description="Id of the API key that wrote it.")


@strawberry.type(description="The versions of a video's metadata, newest first.")
class MetadataHistory:
    versions: list[MetadataVersionInfo]
    current_version: int


@strawberry.type(description="The outcome of a metadata write.")
class MetadataWrite:
    success: bool
    version: int = strawberry.field(description="The version now current.")
    updated_at: datetime
    description: str
    created: bool = strawberry.field(
        description="False when the change left the document as it was, so no version was added."
    )


@strawberry.type(description="A tracked object: AI detection, surface or manual object.")
class TrackedObject:
    summary: strawberry.Private[ObjectSummary]

    @strawberry.field
    def id(self) -> str:
        return self.summary.id

    @strawberry.field(description="Detector or CLIP label.")
    def label(self) -> str | None:
        return self.summary.label

    @strawberry.field(description="Label set by a person.")
    def user_label(self) -> str | None:
        return self.summary.user_label

    @strawberry.field
    def name(self) -> str | None:
        return self.summary.name

    @strawberry.field(description="Mean score of the track, 0..1.")
    def confidence(self) -> float | None:
        return self.summary.confidence

    @strawberry.field
    def first_frame(self) -> int | None:
        return self.summary.first_frame

    @strawberry.field
    def last_frame(self) -> int | None:
        return self.summary.last_frame

    @strawberry.field
    def frame_count(self) -> int | None:
        return self.summary.frame_count

    @strawberry.field(description="box or surface.")
    def kind(self) -> str | None:
        return self.summary.kind

    @strawberry.field(description="ai, surface or manual.")
    def source(self) -> str | None:
        return self.summary.source

    @strawberry.field
    def custom_data(self) -> JSON:
        return JSON(self.summary.custom_data)

    @strawberry.field(description="The per-frame track as parallel arrays, read when selected.")
    async def track(self, info: Info) -> JSON | None:
        track = await object_service.load_object_track(info.context.runtime, self.summary)
        return None if track is None else JSON(track)


@strawberry.type
class ObjectUpdateResult:
    success: bool
    version: int
    object: TrackedObject


@strawberry.type
class ObjectDeleteResult:
    success: bool
    version: int
    removed_overlay_ids: list[str] = strawberry.field(
        description="Overlays that were bound to the object and were deleted with it."
    )


def _write_result(result: VersionWrite) -> MetadataWrite:
    return MetadataWrite(
        success=True,
        version=result.version,
        updated_at=result.created_at,
        description=result.description,
        created=result.created,
    )


def _checked_json(runtime: Runtime, value: Any, *, key: str | None = None) -> Any:
    """Check a JSON variable with the limits of a REST body and return a fresh copy of it.

    GraphQL variables are parsed leniently (NaN and Infinity pass), so the value is encoded
    again and parsed strictly. With `key`, the value is checked as the body `{key: value}`,
    so error fields read like those of the REST endpoint, e.g. `customData.price`.
    """
    # NOTE: the size limit applies to the value, not to the request: the GraphQL router reads
    # the whole request body before any resolver runs.
    wrapped = value if key is None else {key: value}
    try:
        raw = json.dumps(wrapped, separators=(",", ":")).encode()
    except RecursionError:
        raise InvalidParameter(
            f"The value is nested deeper than {DEFAULT_MAX_DEPTH} levels.",
            field=key,
            details={"limit": DEFAULT_MAX_DEPTH},
        ) from None
    parsed = parse_json_body(raw, max_bytes=runtime.settings.max_body_bytes, require_object=True)
    return parsed if key is None else parsed[key]


@strawberry.type
class MetadataQuery:
    @strawberry.field(description="A video's metadata document, tracks included.")
    async def metadata(
        self, info: Info, video_id: strawberry.ID, version: int | None = None
    ) -> JSON:
        context = info.context
        # The stored JSON goes into the response as it is: the router encodes results with
        # orjson, which embeds a Fragment without parsing 30 MB of tracks into Python objects.
        body, _ = await metadata_service.get_document_json(
            context.runtime, context.principal, video_id, version=version
        )
        return JSON(orjson.Fragment(body))

    @strawberry.field(description="The versions of a video's metadata document, newest first.")
    async def metadata_versions(self, info: Info, video_id: strawberry.ID) -> MetadataHistory:
        context = info.context
        history = await metadata_service.list_versions(context.runtime, context.principal, video_id)
        return MetadataHistory(
            versions=[
                MetadataVersionInfo(
                    version=v.version,
                    created_at=v.created_at,
                    description=v.description,
                    author=v.author,
                )
                for v in history.versions
            ],
            current_version=history.current_version,
        )

    @strawberry.field(description="The tracked objects of the current version, in document order.")
    async def objects(self, info: Info, video_id: strawberry.ID) -> list[TrackedObject]:
        context = info.context
        summaries = await object_service.list_objects(context.runtime, context.principal, video_id)
        return [TrackedObject(summary=summary) for summary in summaries]


@strawberry.type
class MetadataMutation:
    @strawberry.mutation(
        description="Merge a partial document into the current version (see the merge rules)."
    )
    async def patch_metadata(
        self,
        info: Info,
        video_id: strawberry.ID,
        patch: JSON,
        if_match: int | None = None,
        description: str | None = None,
    ) -> MetadataWrite:
        context = info.context
        runtime = context.runtime
        await video_service.get_video(
            runtime, context.principal, video_id, scope=Scope.METADATA_WRITE
        )
        checked = _checked_json(runtime, patch)
        result = await metadata_service.patch_document(
            runtime,
            context.principal,
            video_id,
            checked,
            if_match=if_match,
            description=description,
        )
        return _write_result(result)

    @strawberry.mutation(description="Store a copy of an earlier version as a new version.")
    async def restore_metadata_version(
        self,
        info: Info,
        video_id: strawberry.ID,
        version: int,
        if_match: int | None = None,
        description: str | None = None,
    ) -> MetadataWrite:
        context = info.context
        result = await metadata_service.restore_version(
            context.runtime,
            context.principal,
            video_id,
            version,
            if_match=if_match,
            description=description,
        )
        return _write_result(result)

    @strawberry.mutation(
        description="Set userLabel, name or customData of an object. customData is merged "
        "into the current record, and null deletes a key."
    )
    async def update_object(
        self,
        info: Info,
        video_id: strawberry.ID,
        object_id: str,
        user_label: str | None = strawberry.UNSET,
        name: str | None = strawberry.UNSET,
        custom_data: JSON | None = strawberry.UNSET,
    ) -> ObjectUpdateResult:
        context = info.context
        runtime = context.runtime
        await video_service.get_video(
            runtime, context.principal, video_id, scope=Scope.METADATA_WRITE
        )
        given = {"userLabel": user_label, "name": name, "customData": custom_data}
        changes = {key: value for key, value in given.items() if value is not strawberry.UNSET}
        if "customData" in changes:
            changes["customData"] = _checked_json(runtime, changes["customData"], key="customData")
        result = await object_service.update_object(
            runtime, context.principal, video_id, object_id, changes
        )
        return ObjectUpdateResult(
            success=True, version=result.version, object=TrackedObject(summary=result.object)
        )

    @strawberry.mutation(
        description="Delete an object with its track and the overlays bound to it."
    )
    async def delete_object(
        self, info: Info, video_id: strawberry.ID, object_id: str
    ) -> ObjectDeleteResult:
        context = info.context
        result = await object_service.delete_object(
            context.runtime, context.principal, video_id, object_id
        )
        return ObjectDeleteResult(
            success=True, version=result.version, removed_overlay_ids=result.removed_overlay_ids
        )
