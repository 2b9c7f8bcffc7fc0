"""Uploaded videos and what probing found in them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Field, SQLModel

from mp4e.models.base import bigint_column, json_column, new_id, timestamp_column, utcnow


class VideoStatus(StrEnum):
    UPLOADING = "uploading"
    READY = "ready"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class Video(SQLModel, table=True):
    """A video of an account: its stored file, probe results and current metadata version."""

    __tablename__ = "videos"

    id: str = Field(default_factory=lambda: new_id("video"), primary_key=True)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    name: str
    status: str = Field(default=VideoStatus.UPLOADING)
    original_filename: str | None = None
    file_name: str
    size_bytes: int = Field(sa_column=bigint_column())
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    probe: dict[str, Any] | None = Field(default=None, sa_column=json_column())
    has_thumbnail: bool = False
    current_version: int = 0
    auto_process: bool = False
    error: str | None = None
    warnings: list[str] = Field(default_factory=list, sa_column=json_column(nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column(index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
