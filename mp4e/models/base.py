"""Column helpers shared by the table modules."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Return a random public id such as `video_3f9c2a7b1e0d4c5a`."""
    return f"{prefix}_{secrets.token_hex(8)}"


def json_column(*, nullable: bool = True) -> Any:
    """Return a JSON column: JSONB on PostgreSQL, JSON text elsewhere."""
    return Column(JSON().with_variant(JSONB(), "postgresql"), nullable=nullable)


def bigint_column() -> Any:
    """Return a 64-bit integer column, for byte sizes over 2 GiB."""
    return Column(BigInteger, nullable=False)


def timestamp_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


def isoformat_z(value: datetime | None) -> str | None:
    """Format a timestamp as the API shows it: `2024-01-15T10:30:00Z`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
