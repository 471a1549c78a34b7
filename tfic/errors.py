"""One exception hierarchy for all of tfic, and one table mapping it to gRPC and HTTP codes.

Client mistakes carry a precise message that is safe to show to the caller. Anything that is
not a ``TficError`` is an internal error: callers get a generic message, the log gets the
traceback. Adapters (the gRPC interceptor, the gateway's handler, the CLI) look codes up with
:func:`status_for`, which walks the class hierarchy so the most specific class with an entry wins
and a subclass needs no entry of its own.

The table lives here, and only here. A subclass defined elsewhere that needs another HTTP status
(the gateway's 405, 406 and 408) says so in its class statement, ``class NotAcceptable(InvalidArgument,
http_status=406, http_name="NOT_ACCEPTABLE")``, which adds its row to the same table; the gRPC code is
inherited. An HTTP status that is not its gRPC code's own (413 and 415 are INVALID_ARGUMENT over gRPC) has
its own name for HTTP error bodies, ``CONTENT_TOO_LARGE``, as RFC 9110 names it.

Besides ``message``, an error may carry what ``google.rpc`` error details transport
(:mod:`tfic.grpc_errors`): ``reason`` (a stable machine-readable class, ``ErrorInfo.reason``),
``details`` (context such as the model name, ``ErrorInfo.metadata``), ``field`` (the request field
at fault, ``BadRequest``) and ``retry_after_seconds`` (``RetryInfo``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Status:
    grpc_code: str  # the name of a grpc.StatusCode member; the core does not import grpc
    http_status: int
    # The ``status`` of an HTTP error body when the HTTP status is not the gRPC code's own (413 is not what
    # INVALID_ARGUMENT means over HTTP): the status's name in RFC 9110, upper snake case.
    http_name: str = ""

    @property
    def name(self) -> str:
        """What an HTTP error body says in ``status``: the HTTP-specific name, else the gRPC code's."""
        return self.http_name or self.grpc_code


class TficError(Exception):
    """Base class. ``message`` is shown to clients; ``details`` is structured context.

    ``field`` names the request field at fault when it is known (``images[2]``,
    ``hyperparameters.learning_rate``, ``model_spec.name``); ``retry_after_seconds`` is the server's
    hint for when a retry may succeed.
    """

    reason: str = "internal"
    retry_after_seconds: float | None = None

    def __init__(
        self, message: str, *, field: str | None = None, retry_after_seconds: float | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if retry_after_seconds is not None:
            self.retry_after_seconds = retry_after_seconds
        self.details: dict[str, Any] = details

    def __init_subclass__(
        cls,
        *,
        http_status: int | None = None,
        grpc_code: str | None = None,
        http_name: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init_subclass__(**kw)
        if http_status is not None or grpc_code is not None or http_name is not None:
            inherited = status_for_class(cls)
            status = http_status or inherited.http_status
            # A name belongs to its HTTP status: a class with another status does not inherit it.
            name = http_name if http_name is not None else ""
            if http_name is None and status == inherited.http_status:
                name = inherited.http_name
            _TABLE[cls] = Status(grpc_code or inherited.grpc_code, status, name)

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
    """``name=`` (when given) is the hyperparameter at fault; it becomes the ``field`` too."""

    reason = "invalid_hyperparameter"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        name = details.get("name")
        if field is None and name:
            field = f"hyperparameters.{str(name).strip()}"
        super().__init__(message, field=field, **details)


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
    """Queues full: the caller should back off and retry (after 1 s unless the raiser knows better)."""

    reason = "resource_exhausted"
    retry_after_seconds: float | None = 1.0


class DeadlineExceeded(TficError):
    reason = "deadline_exceeded"


class Unavailable(TficError):
    """Shutting down, or no version of the model is loaded yet."""

    reason = "unavailable"


class Cancelled(TficError):
    reason = "cancelled"


INTERNAL = Status("INTERNAL", 500)
INTERNAL_MESSAGE = "internal error; see the server log"

# The one table. Order matters only for reading it backwards (:func:`class_for_grpc_code`): the first
# class with a given code is the general one.
_TABLE: dict[type[BaseException], Status] = {
    InvalidArgument: Status("INVALID_ARGUMENT", 400),
    UnsupportedFormat: Status("INVALID_ARGUMENT", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ImageTooLarge: Status("INVALID_ARGUMENT", 413, "CONTENT_TOO_LARGE"),
    NotFound: Status("NOT_FOUND", 404),
    AlreadyExists: Status("ALREADY_EXISTS", 409),
    PermissionDenied: Status("PERMISSION_DENIED", 403),
    Unauthenticated: Status("UNAUTHENTICATED", 401),
    FailedPrecondition: Status("FAILED_PRECONDITION", 409),
    ResourceExhausted: Status("RESOURCE_EXHAUSTED", 429),
    DeadlineExceeded: Status("DEADLINE_EXCEEDED", 504),
    Unavailable: Status("UNAVAILABLE", 503),
    Cancelled: Status("CANCELLED", 499),
    TficError: INTERNAL,
}

TABLE = MappingProxyType(_TABLE)  # read-only view, for documentation and tests


def status_for_class(cls: type[BaseException]) -> Status:
    """The status of a class: the entry of the first class along its MRO that has one."""
    for base in cls.__mro__:
        status = _TABLE.get(base)
        if status is not None:
            return status
    return INTERNAL


def status_for(exc: BaseException) -> Status:
    """The status for an exception, found along its class hierarchy (most specific first)."""
    return status_for_class(type(exc))


def class_for_grpc_code(grpc_code: str) -> type[TficError] | None:
    """The most general tfic class with that gRPC code (``NOT_FOUND`` → :class:`NotFound`); None for INTERNAL
    and for codes tfic never sends."""
    for cls, status in _TABLE.items():
        if status.grpc_code == grpc_code and status is not INTERNAL and issubclass(cls, TficError):
            return cls
    return None


def class_for_status_name(name: str) -> type[TficError] | None:
    """The class an HTTP error body's ``status`` stands for: a gRPC code name as :func:`class_for_grpc_code`
    reads it, else the first class whose HTTP-specific name it is (``CONTENT_TOO_LARGE`` → ImageTooLarge)."""
    found = class_for_grpc_code(name)
    if found is None and name:
        for cls, status in _TABLE.items():
            if status.http_name == name and issubclass(cls, TficError):
                return cls
    return found


def status_for_http(http_status: int) -> Status | None:
    """The first row with that HTTP status (for errors that arrive as HTTP statuses only), None if none has it."""
    for status in _TABLE.values():
        if status.http_status == http_status:
            return status
    return None


def grpc_code_for_http(http_status: int) -> str:
    """The gRPC code name of an HTTP status, read backwards from the table (for errors that arrive as HTTP
    statuses only, such as a framework's); INTERNAL for other 5xx, UNKNOWN for the rest."""
    status = status_for_http(http_status)
    if status is not None:
        return status.grpc_code
    return "INTERNAL" if http_status >= 500 else "UNKNOWN"


def public_message(exc: BaseException) -> str:
    """What a client may see: our own messages verbatim, never an internal exception's text."""
    if is_public(exc):
        assert isinstance(exc, TficError)
        return exc.message
    return INTERNAL_MESSAGE


def is_public(exc: BaseException) -> bool:
    """Whether the exception is one of tfic's client-facing errors (its message, reason and details may be shown)."""
    return isinstance(exc, TficError) and type(exc) is not TficError and status_for(exc) is not INTERNAL


def _subclasses(cls: type[TficError]) -> Iterator[type[TficError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def class_for(base: type[TficError], reason: str | None) -> type[TficError]:
    """The class a remote error with ``reason`` stands for: the subclass of ``base`` (the class of its status
    code) that declares that reason, else ``base``. A reason that does not fit the code is ignored."""
    if reason:
        for cls in (base, *_subclasses(base)):
            if cls.__dict__.get("reason") == reason:
                return cls
    return base
