"""Shared GraphQL scalars."""

from __future__ import annotations

from typing import Any, NewType

import strawberry

JSON = strawberry.scalar(
    NewType("JSON", object),
    description="Any JSON value, sent as is (used for documents and compact tracks).",
    serialize=lambda value: value,
    parse_value=lambda value: value,
)

JSONValue = Any
