"""One exception hierarchy for all of tfic, and one table mapping it to gRPC and HTTP codes.

Client mistakes carry a precise message that is safe to show to the caller. Anything that is
not a ``TficError`` is an internal error: callers get a generic message, the log gets the
traceback. Adapters (the gRPC interceptor, the gateway's handler, the CLI) look codes up with
:func:`status_for`, which walks the class hierarchy so a subclass needs no entry of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TficError(Exception):
    """Base class. ``message`` is shown to clients; ``details`` is structured context."""

    reason: str = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message


class InvalidArgument(TficError):
    reason = "invalid_argument"


class InvalidImage(InvalidArgument):
    """Corrupt, truncated, empty or undecodable image data."""

    reason = "invalid_image"


class UnsupportedFormat(InvalidArgument):
    """A content type or image format tfic does not accept."""

    reason = "unsupported_format"


class ImageTooLarge(InvalidArgument):
    """Too many encoded bytes or too many pixels (decompression bombs)."""

    reason = "image_too_large"


class InvalidHyperparameter(InvalidArgument):
    reason = "invalid_hyperparameter"


class InvalidDataset(InvalidArgument):
    """A dataset that cannot be trained on: malformed list/record files, empty classes…"""

    reason = "invalid_dataset"


class IncompatibleModel(InvalidArgument):
    """A base model whose classes, image shape or architecture do not fit the request."""

    reason = "incompatible_model"


class NotFound(TficError):
    reason = "not_found"


class ModelNotFound(NotFound):
    reason = "model_not_found"


class AlreadyExists(TficError):
    reason = "already_exists"


class PermissionDenied(TficError):
    """A path outside the configured data roots, or a missing/wrong bearer token."""

    reason = "permission_denied"


class Unauthenticated(TficError):
    reason = "unauthenticated"


class FailedPrecondition(TficError):
    reason = "failed_precondition"


class ResourceExhausted(TficError):
    """Queues full: the caller should back off and retry."""

    reason = "resource_exhausted"

    def __init__(self, message: str, retry_after_seconds: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceeded(TficError):
    reason = "deadline_exceeded"


class Unavailable(TficError):
    """Shutting down, or no version of the model is loaded yet."""

    reason = "unavailable"


class Cancelled(TficError):
    reason = "cancelled"


@dataclass(frozen=True)
class Status:
    grpc_code: str  # the name of a grpc.StatusCode member; the core does not import grpc
    http_status: int


_TABLE: dict[type[BaseException], Status] = {
    InvalidArgument: Status("INVALID_ARGUMENT", 400),
    UnsupportedFormat: Status("INVALID_ARGUMENT", 415),
    ImageTooLarge: Status("INVALID_ARGUMENT", 413),
    NotFound: Status("NOT_FOUND", 404),
    AlreadyExists: Status("ALREADY_EXISTS", 409),
    PermissionDenied: Status("PERMISSION_DENIED", 403),
    Unauthenticated: Status("UNAUTHENTICATED", 401),
    FailedPrecondition: Status("FAILED_PRECONDITION", 409),
    ResourceExhausted: Status("RESOURCE_EXHAUSTED", 429),
    DeadlineExceeded: Status("DEADLINE_EXCEEDED", 504),
    Unavailable: Status("UNAVAILABLE", 503),
    Cancelled: Status("CANCELLED", 499),
    TficError: Status("INTERNAL", 500),
}

INTERNAL = Status("INTERNAL", 500)
INTERNAL_MESSAGE = "internal error; see the server log"


def status_for(exc: BaseException) -> Status:
    """The status for an exception, found along its class hierarchy (most specific first)."""
    for cls in type(exc).__mro__:
        status = _TABLE.get(cls)
        if status is not None:
            return status
    return INTERNAL


def public_message(exc: BaseException) -> str:
    """What a client may see: our own messages verbatim, never an internal exception's text."""
    if isinstance(exc, TficError) and status_for(exc) is not INTERNAL and type(exc) is not TficError:
        return exc.message
    return INTERNAL_MESSAGE
