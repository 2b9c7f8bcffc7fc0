"""Accounts and their API keys."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from mp4e.models.base import json_column, new_id, timestamp_column, utcnow


class Account(SQLModel, table=True):
    """A tenant: every video belongs to exactly one account."""

    __tablename__ = "accounts"

    id: str = Field(default_factory=lambda: new_id("acct"), primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class ApiKey(SQLModel, table=True):
    """An API key. Only the SHA-256 of its secret is stored."""

    __tablename__ = "api_keys"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    name: str
    secret_sha256: str
    scopes: list[str] = Field(default_factory=list, sa_column=json_column(nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp_column(nullable=True))
