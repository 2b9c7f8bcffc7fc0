"""Shared GraphQL scalars."""

from __future__ import annotations

from typing import Any, NewType

import strawberry

# A distinct type, so that type checkers accept it in annotations. The schema maps it to the
# scalar below, and resolvers wrap a returned value with `JSON(value)`, which returns it as is.
JSON = NewType("JSON", object)

JSON_SCALAR = strawberry.scalar(
    name="JSON",
    description="Any JSON value, sent as is (used for documents and compact tracks).",
    serialize=lambda value: value,
    parse_value=lambda value: value,
)

JSONValue = Any
