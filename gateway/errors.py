"""The gateway's one error handler: every failure becomes ``{"error": {"code", "status", "message"}}``.

``code`` is the HTTP status (an integer, as in Google's JSON error format), ``status`` the canonical gRPC
code name (``INVALID_ARGUMENT``, ``NOT_FOUND`` …), ``message`` a sentence meant for the caller, and
``reason`` (when known) the machine-readable class of the error (``invalid_image``, ``model_not_found``,
``queue_full`` …). The status comes from :func:`tfic.errors.status_for` (one table for all of tfic),
with a few HTTP-only cases added here. 429 and 503 carry ``Retry-After``; 401 carries
``WWW-Authenticate``. Unknown exceptions are logged with their traceback and answered with a generic 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

from tfic.errors import (
    INTERNAL_MESSAGE,
    ImageTooLarge,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TficError,
    Unauthenticated,
    public_message,
    status_for,
)
from tfic.grpc_errors import UpstreamError

log = logging.getLogger(__name__)

ERROR_MEDIA_TYPE = "application/json"


class NotAcceptable(InvalidArgument):
    """No representation the client accepts."""

    reason = "not_acceptable"


class BodyTooLarge(ImageTooLarge):
    """The request body is larger than the gateway's limit."""

    reason = "body_too_large"


class RouteNotFound(NotFound):
    reason = "route_not_found"


class MethodNotAllowed(InvalidArgument):
    reason = "method_not_allowed"


# HTTP statuses the shared table has no reason to know (HTTP-only conditions), most specific first.
_HTTP_ONLY: dict[type[BaseException], tuple[str, int]] = {
    NotAcceptable: ("INVALID_ARGUMENT", 406),
    MethodNotAllowed: ("INVALID_ARGUMENT", 405),
    BodyTooLarge: ("INVALID_ARGUMENT", 413),
}

_HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    406: "INVALID_ARGUMENT",
    409: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def classify(exc: BaseException) -> tuple[int, str, str, str | None]:
    """(HTTP status, gRPC status name, public message, reason) of an exception."""
    if isinstance(exc, HTTPException):
        status_name = _HTTP_STATUS_NAMES.get(exc.status_code, "INTERNAL" if exc.status_code >= 500 else "UNKNOWN")
        return exc.status_code, status_name, str(exc.detail), None
    for cls in type(exc).__mro__:
        if cls in _HTTP_ONLY:
            name, http = _HTTP_ONLY[cls]
            return http, name, public_message(exc), getattr(exc, "reason", None)
    status = status_for(exc)
    message = public_message(exc)
    reason = exc.reason if isinstance(exc, TficError) and message != INTERNAL_MESSAGE else None
    return status.http_status, status.grpc_code, message, reason


def error_body(http_status: int, status_name: str, message: str, reason: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": http_status, "status": status_name, "message": message}
    if reason is not None:
        error["reason"] = reason
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
        retry: float | None = None
        if isinstance(exc, ResourceExhausted):
            retry = exc.retry_after_seconds
        elif isinstance(exc, TficError):
            retry = exc.details.get("retry_after_seconds")
        headers["Retry-After"] = str(max(0, round(retry if retry is not None else retry_after_seconds)))
    if http_status == 401 or isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="tfic"'
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)
    return Response(
        error_body(http_status, status_name, message, reason),
        status_code=http_status,
        media_type=ERROR_MEDIA_TYPE,
        headers=headers,
    )
