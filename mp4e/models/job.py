"""Background jobs: ingest, processing, surface tracking."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Field, SQLModel

from mp4e.models.base import json_column, new_id, timestamp_column, utcnow


class JobKind(StrEnum):
    INGEST = "ingest"
    PROCESS = "process"
    SURFACE = "surface"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.PROCESSING)


class Job(SQLModel, table=True):
    """One unit of background work on a video, with its progress and lease.

    A worker owns a running job while `lease_expires_at` is in the future and renews the lease
    with heartbeats; a job whose lease ran out was lost with its worker and is requeued or
    failed by the reaper.
    """

    __tablename__ = "jobs"

    id: str = Field(default_factory=lambda: new_id("job"), primary_key=True)
    video_id: str = Field(foreign_key="videos.id", index=True)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    kind: str
    status: str = Field(default=JobStatus.QUEUED, index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=json_column(nullable=False))
    progress: float = 0.0
    current_frame: int = 0
    total_frames: int = 0
    objects_detected: int = 0
    eta_s: float | None = None
    result: dict[str, Any] | None = Field(default=None, sa_column=json_column())
    error: str | None = None
    cancel_requested: bool = False
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    started_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
