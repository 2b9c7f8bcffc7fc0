"""Imports every job handler module so that its handlers are registered."""

from mp4e.workers import (
    ingest,  # noqa: F401
    processing,  # noqa: F401
    surface,  # noqa: F401
)
