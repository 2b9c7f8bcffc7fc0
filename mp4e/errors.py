"""Domain errors of the MP4E server.

Every error the core raises derives from `MP4EError` and carries a stable `code`, an optional
`field` (the request field or JSON path at fault) and a `details` record. The HTTP status and
the GraphQL extensions are chosen in `mp4e.rest_compat` and `mp4e.schema`, never here.
"""

from __future__ import annotations

from typing import Any


class MP4EError(Exception):
    """Base class of every error the server reports to a client."""

    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}
        if code is not None:
            self.code = code

    @property
    def extensions(self) -> dict[str, Any]:
        """The structured part of the error: `code`, `field` and `details`.

        graphql-core copies this attribute of an original error into the GraphQL error's
        `extensions`, so websocket results carry it as HTTP results do.
        """
        return {"code": self.code, "field": self.field, "details": self.details}


class InvalidParameter(MP4EError):
    """Raised when a request parameter or body field has an invalid value."""

    code = "INVALID_PARAMETER"


class ReadOnlyField(InvalidParameter):
    """Raised when a write tries to change a part of a document that clients cannot change."""

    code = "READ_ONLY_FIELD"


class EmptyFile(InvalidParameter):
    """Raised when an uploaded file has no bytes."""

    code = "EMPTY_FILE"


class PayloadTooLarge(MP4EError):
    """Raised when an upload or a request body is over its configured size limit."""

    code = "PAYLOAD_TOO_LARGE"


class NoVideoStream(MP4EError):
    """Raised when a media file contains no decodable video stream (audio only, cover art only)."""

    code = "NO_VIDEO_STREAM"


class CorruptMedia(MP4EError):
    """Raised when a file is not a media file, or is too damaged to read."""

    code = "CORRUPT_MEDIA"


class UnsupportedMedia(MP4EError):
    """Raised when a readable media file cannot be handled, e.g. codecs MP4 cannot carry."""

    code = "UNSUPPORTED_MEDIA"


class InvalidQuad(MP4EError):
    """Raised when four surface corners do not form a usable convex quadrilateral."""

    code = "INVALID_QUAD"


class MetadataCorrupt(MP4EError):
    """Raised when an embedded MP4E metadata box exists but cannot be decoded."""

    code = "METADATA_CORRUPT"


class Unauthorized(MP4EError):
    """Raised when the API key is missing, unknown or revoked."""

    code = "UNAUTHORIZED"


class Forbidden(MP4EError):
    """Raised when a valid API key lacks the scope an operation needs."""

    code = "FORBIDDEN"


class NotFound(MP4EError):
    """Raised when a resource does not exist or belongs to another account."""

    code = "NOT_FOUND"


class Conflict(MP4EError):
    """Raised when an operation clashes with the current state, e.g. a job already running."""

    code = "CONFLICT"


class VersionConflict(Conflict):
    """Raised when `If-Match` names a metadata version that is no longer current."""

    code = "VERSION_CONFLICT"


class RateLimited(MP4EError):
    """Raised when an API key has spent its request budget for the current window."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class Cancelled(MP4EError):
    """Raised inside a job when its cancellation was requested."""

    code = "CANCELLED"
