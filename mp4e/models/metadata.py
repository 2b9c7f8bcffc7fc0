"""Immutable metadata versions and the content-addressed blobs they share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from mp4e.models.base import bigint_column, json_column, timestamp_column, utcnow


class MetadataVersion(SQLModel, table=True):
    """One version of a video's metadata document.

    `document` holds every top-level key except `objects`; `objects_hash` names the blob that
    maps object ids to object blobs, and each object blob names its track blob. A version that
    leaves objects alone reuses the previous `objects_hash`, so it stores kilobytes.
    """

    __tablename__ = "metadata_versions"
    __table_args__ = (UniqueConstraint("video_id", "version", name="uq_metadata_version"),)

    id: int | None = Field(default=None, primary_key=True)
    video_id: str = Field(foreign_key="videos.id", index=True)
    version: int
    document: dict[str, Any] = Field(sa_column=json_column(nullable=False))
    objects_hash: str
    description: str
    author: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class Blob(SQLModel, table=True):
    """A content-addressed piece of a document (object manifest, object, or track)."""

    __tablename__ = "blobs"

    video_id: str = Field(foreign_key="videos.id", primary_key=True)
    sha256: str = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size_bytes: int = Field(sa_column=bigint_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class ExportFile(SQLModel, table=True):
    """An export built for one metadata version and format, reused until the video changes."""

    __tablename__ = "export_files"
    __table_args__ = (UniqueConstraint("video_id", "version", "format", name="uq_export"),)

    id: int | None = Field(default=None, primary_key=True)
    video_id: str = Field(foreign_key="videos.id", index=True)
    version: int
    format: str
    file_name: str
    size_bytes: int = Field(sa_column=bigint_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
