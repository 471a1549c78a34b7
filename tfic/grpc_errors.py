"""tfic exceptions ↔ gRPC statuses, both directions in one place.

Servers: servicers raise :class:`tfic.errors.TficError` subclasses; :class:`ErrorInterceptor` turns
them into ``context.abort(code, message)`` with a ``tfic-error-reason`` trailer (and ``retry-after``
when there is one). Unknown exceptions become INTERNAL with a generic message and the traceback in the
log, so no internal detail leaks to clients.

Clients (the gateway, ``tfic predict --server``): :func:`exception_from_rpc` turns a failed call back
into the same exception class, refined by that trailer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc import aio

from tfic import errors
from tfic.errors import INTERNAL, TficError, public_message, status_for

log = logging.getLogger(__name__)

REASON_METADATA = "tfic-error-reason"
RETRY_AFTER_METADATA = "retry-after"


class UpstreamError(TficError):
    """The called service failed in a way the caller cannot fix (INTERNAL, UNKNOWN, DATA_LOSS …)."""

    reason = "internal"


def grpc_code(exc: BaseException) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, status_for(exc).grpc_code)
    return code


REQUEST_ID_METADATA = "x-request-id"  # set by the gateway (and any client that wants its calls traced)


def _request_id(context: aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA:
            return str(value)
    return "-"


async def _abort(context: aio.ServicerContext, method: str, exc: BaseException) -> None:
    status = status_for(exc)
    if status is INTERNAL or not isinstance(exc, TficError):
        # The caller's request id ties this traceback to the gateway's log line and its 500 response.
        log.exception("internal error in %s (request id %s)", method, _request_id(context), exc_info=exc)
    trailing = []
    if isinstance(exc, TficError):
        trailing.append((REASON_METADATA, exc.reason))
        retry = getattr(exc, "retry_after_seconds", None)
        if retry is not None:
            trailing.append((RETRY_AFTER_METADATA, str(max(1, round(retry)))))
    if trailing:
        context.set_trailing_metadata(tuple(trailing))
    await context.abort(getattr(grpc.StatusCode, status.grpc_code), public_message(exc))


class ErrorInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: aio.ServicerContext) -> Any:
                try:
                    return await inner_uu(request, context)
                except (aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None and not inspect.isasyncgenfunction(handler.unary_stream):
            # A streaming handler written as a coroutine that calls context.write() (grpc_health's
            # Watch): await it rather than iterate it.
            inner_uw: Any = handler.unary_stream

            async def unary_write(request: Any, context: aio.ServicerContext) -> None:
                try:
                    await inner_uw(request, context)
                except (aio.AbortError, grpc.RpcError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_write, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for item in inner_us(request, context):
                        yield item
                except (aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


# gRPC code → the tfic exception class it stands for; codes missing here are upstream failures (500).
_BY_CODE: dict[grpc.StatusCode, type[errors.TficError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.CANCELLED: errors.Cancelled,
}

# Messages for statuses gRPC itself produced (no tfic reason attached): their details name internal
# addresses and library internals, which callers need not see.
_TRANSPORT_MESSAGES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "the inference service is unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the inference service did not answer within the request's deadline",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the inference service is overloaded; retry later",
    grpc.StatusCode.CANCELLED: "the call to the inference service was cancelled",
}


def _subclasses(cls: type[errors.TficError]) -> Iterable[type[errors.TficError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@functools.cache
def _by_reason() -> dict[str, type[errors.TficError]]:
    table: dict[str, type[errors.TficError]] = {}
    for cls in _subclasses(errors.TficError):
        table.setdefault(cls.reason, cls)
    return table


def exception_from_rpc(exc: grpc.RpcError, default_retry_after: float = 1.0) -> errors.TficError:
    """The tfic exception for a failed call.

    The class comes from the status code, refined by the ``tfic-error-reason`` trailer that tfic's servers
    attach (``invalid_image`` → :class:`~tfic.errors.InvalidImage`, ``image_too_large`` → 413 …). A status
    with such a trailer came from tfic's own code and its message is shown as is; one without it came from
    gRPC (no connection, deadline, message-size limit) and gets a fixed message.
    """
    code = exc.code()
    details = exc.details() or ""
    metadata: Any = exc.trailing_metadata() or ()
    trailing = {str(key): value for key, value in metadata if isinstance(value, str)}
    reason = trailing.get(REASON_METADATA)
    retry_after = default_retry_after
    if RETRY_AFTER_METADATA in trailing:
        with contextlib.suppress(ValueError):
            retry_after = max(0.0, float(trailing[RETRY_AFTER_METADATA]))
    base = _BY_CODE.get(code)
    if base is None:
        return UpstreamError(errors.INTERNAL_MESSAGE, upstream=f"{code.name}: {details}")
    cls = base
    if reason is not None:
        refined = _by_reason().get(reason)
        if refined is not None and issubclass(refined, base):
            cls = refined
    elif code in _TRANSPORT_MESSAGES:
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            return errors.ImageTooLarge("the request is larger than the inference service accepts", upstream=details)
        details = _TRANSPORT_MESSAGES[code]
    if issubclass(cls, errors.ResourceExhausted):
        return cls(details, retry_after_seconds=retry_after)
    result = cls(details)
    if code is grpc.StatusCode.UNAVAILABLE and RETRY_AFTER_METADATA in trailing:
        result.details["retry_after_seconds"] = retry_after
    return result
