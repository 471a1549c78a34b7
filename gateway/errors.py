"""The gateway's one error handler: every failure becomes ``{"error": {"code", "status", "message", …}}``.

``code`` is the HTTP status (an integer, as in Google's JSON error format), ``status`` the canonical gRPC
code name (``INVALID_ARGUMENT``, ``NOT_FOUND`` …) or, for an HTTP status that is not its gRPC code's own, that
status's name from the same table (``CONTENT_TOO_LARGE``, ``UNSUPPORTED_MEDIA_TYPE``, ``METHOD_NOT_ALLOWED``,
``NOT_ACCEPTABLE``, ``REQUEST_TIMEOUT``), ``message`` a sentence meant for the caller, and
``reason`` (when known) the machine-readable class of the error (``invalid_image``, ``model_not_found``,
``resource_exhausted`` …). ``details`` holds the same ``google.rpc`` details the gRPC services send
(``ErrorInfo``, ``RetryInfo``, ``BadRequest``), in protobuf's JSON mapping, as Google's JSON errors do.

Statuses come from :func:`tfic.errors.status_for`, the one table for all of tfic. The gateway's
HTTP-only conditions are subclasses that put their own HTTP status into that table (405, 406, 408); others
inherit theirs (a body over the limit is an :class:`~tfic.errors.ImageTooLarge`, 413). 429 and 503 carry
``Retry-After``; 401 carries ``WWW-Authenticate``; an error raised while the body is still arriving (too
large, too slow) carries ``Connection: close``, so the rest of it is not read. Unknown exceptions are
logged with their traceback and answered with a generic 500.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from tfic.errors import (
    DeadlineExceeded,
    ImageTooLarge,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TficError,
    Unauthenticated,
    Unavailable,
    grpc_code_for_http,
    is_public,
    public_message,
    status_for,
    status_for_http,
)
from tfic.grpc_errors import ERROR_DOMAIN, UpstreamError, error_metadata, retry_delay, violation_field

log = logging.getLogger(__name__)

ERROR_MEDIA_TYPE = "application/json"


class NotAcceptable(InvalidArgument, http_status=406, http_name="NOT_ACCEPTABLE"):
    """No representation the client accepts."""

    reason = "not_acceptable"


class BodyTooLarge(ImageTooLarge):
    """The request body is larger than the gateway's limit."""

    reason = "body_too_large"
    close_connection = True  # the rest of the body is still coming: do not read it


class RouteNotFound(NotFound):
    reason = "route_not_found"


class MethodNotAllowed(InvalidArgument, http_status=405, http_name="METHOD_NOT_ALLOWED"):
    reason = "method_not_allowed"


class RequestTimeout(DeadlineExceeded, http_status=408, http_name="REQUEST_TIMEOUT"):
    """The client did not send its headers or body in time (``--header-timeout-seconds``,
    ``--body-timeout-seconds``, or the request's own deadline ran out while its body arrived)."""

    reason = "request_timeout"
    close_connection = True


class TooManyConnections(ResourceExhausted):
    """One client address holds ``--max-connections-per-client`` connections already."""

    reason = "too_many_connections"
    close_connection = True


class ConnectionLimit(Unavailable):
    """The gateway holds ``--max-connections`` connections, every one of them busy with a request."""

    reason = "connection_limit"
    close_connection = True


def classify(exc: BaseException) -> tuple[int, str, str, str | None]:
    """(HTTP status, status name, public message, reason) of an exception; the name is the gRPC code's unless
    the table gives the HTTP status a name of its own (413 ``CONTENT_TOO_LARGE``, 405 ``METHOD_NOT_ALLOWED`` …)."""
    if isinstance(exc, HTTPException):
        row = status_for_http(exc.status_code)
        name = row.name if row is not None else grpc_code_for_http(exc.status_code)
        return exc.status_code, name, str(exc.detail), None
    status = status_for(exc)
    reason = exc.reason if isinstance(exc, TficError) and is_public(exc) else None
    return status.http_status, status.name, public_message(exc), reason


_TYPE = "type.googleapis.com/google.rpc."


def error_details(exc: BaseException) -> list[dict[str, Any]]:
    """The ``google.rpc`` details of a client-facing error (``[]`` for internal ones, which say nothing), in
    protobuf's JSON mapping: what ``json_format.MessageToDict`` makes of :func:`tfic.grpc_errors.status_proto`'s
    details (a test holds them equal), written out because building and converting the protobufs cost
    ~30 µs per error, several times the rest of the response."""
    if not isinstance(exc, TficError) or not is_public(exc):
        return []
    info: dict[str, Any] = {"@type": _TYPE + "ErrorInfo", "reason": exc.reason, "domain": ERROR_DOMAIN}
    metadata = error_metadata(exc)
    if metadata:
        info["metadata"] = metadata
    details = [info]
    if exc.retry_after_seconds is not None:
        delay = retry_delay(exc.retry_after_seconds).ToJsonString()
        details.append({"@type": _TYPE + "RetryInfo", "retryDelay": delay})
    field = violation_field(exc)
    if field:
        violation = {"field": field, "description": exc.message}
        details.append({"@type": _TYPE + "BadRequest", "fieldViolations": [violation]})
    return details


def error_body(
    http_status: int,
    status_name: str,
    message: str,
    reason: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> bytes:
    error: dict[str, Any] = {"code": http_status, "status": status_name, "message": message}
    if reason is not None:
        error["reason"] = reason
    if details:
        error["details"] = details
    return json.dumps({"error": error}, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(exc: BaseException, *, retry_after_seconds: int, request_id: str | None = None) -> Response:
    """The response for any exception; logs internal errors with their traceback."""
    http_status, status_name, message, reason = classify(exc)
    if http_status >= 500 and not isinstance(exc, TficError | HTTPException):
        log.error("internal error (request %s)", request_id, exc_info=exc, extra={"request_id": request_id})
    elif isinstance(exc, UpstreamError):
        log.error("inference service error (request %s): %s", request_id, exc.details.get("upstream", exc.message))
    headers: dict[str, str] = {}
    if http_status in (429, 503):
        retry = exc.retry_after_seconds if isinstance(exc, TficError) else None
        # Rounded up: a sub-second hint must not read as "retry at once".
        headers["Retry-After"] = str(max(0, math.ceil(retry)) if retry is not None else retry_after_seconds)
    if http_status == 401 or isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="tfic"'
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)
    if getattr(exc, "close_connection", False):
        headers["Connection"] = "close"
    return Response(
        error_body(http_status, status_name, message, reason, error_details(exc)),
        status_code=http_status,
        media_type=ERROR_MEDIA_TYPE,
        headers=headers,
    )
