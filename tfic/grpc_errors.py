"""tfic exceptions ↔ gRPC statuses, both directions in one place.

Servers: servicers raise :class:`tfic.errors.TficError` subclasses; :class:`ErrorInterceptor` aborts
the call with the code from :func:`tfic.errors.status_for` and a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer (grpcio-status's :func:`rpc_status.to_status`), the standard rich
error model any gRPC client can read (:func:`status_proto`):

* always an ``ErrorInfo``: ``reason`` the tfic reason (``invalid_image``, ``model_not_found`` …),
  ``domain`` :data:`ERROR_DOMAIN`, ``metadata`` the error's context (model name and version, the
  hyperparameter's name …);
* a ``RetryInfo`` when the error carries a retry delay (queue full, version unloading …);
* a ``BadRequest`` with one field violation when an INVALID_ARGUMENT names its field (``images[2]``,
  ``hyperparameters.learning_rate``, ``model_spec.name``).

Unknown exceptions become INTERNAL with a generic message, an ``ErrorInfo`` saying only ``internal``,
and the traceback in the log (with the caller's ``x-request-id``), so no internal detail leaks.

The home-made ``tfic-error-reason`` and ``retry-after`` trailers that used to carry the reason and the
delay are gone: tfic's own clients (the gateway, ``tfic predict --server``, ``tfic jobs``) read the
Status, and TensorFlow Serving's clients never read either. A gateway older than its inference service
loses the refined 413/415 statuses and the retry hint, so upgrade the gateway first (or both at once).

Clients: :func:`exception_from_rpc` turns a failed call back into the same exception class (the code
refined by ``ErrorInfo.reason``), with its reason, metadata, field and retry delay.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from tfic import errors
from tfic.errors import INTERNAL, InvalidArgument, TficError, is_public, public_message, status_for
from tfic.grpc_typing import ServerInterceptor

log = logging.getLogger(__name__)

ERROR_DOMAIN = "tfic.dev"  # ErrorInfo.domain of every error tfic's services send
REQUEST_ID_METADATA = "x-request-id"  # set by the gateway (and any client that wants its calls traced)


class UpstreamError(TficError):
    """The called service failed in a way the caller cannot fix (INTERNAL, UNKNOWN, DATA_LOSS …)."""

    reason = "internal"


def grpc_code(exc: BaseException) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, status_for(exc).grpc_code)
    return code


# --- server side ------------------------------------------------------------------------------------------


def _metadata_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None  # structured values have no place in a map<string, string>


def error_metadata(exc: TficError) -> dict[str, str]:
    """``ErrorInfo.metadata``: the error's scalar details as strings."""
    return {k: v for k, v in ((k, _metadata_value(v)) for k, v in exc.details.items()) if v is not None}


def retry_delay(seconds: float) -> duration_pb2.Duration:
    delay = duration_pb2.Duration()
    delay.FromTimedelta(datetime.timedelta(seconds=max(0.0, seconds)))
    return delay


def violation_field(exc: TficError) -> str | None:
    """The field a ``BadRequest`` names: only INVALID_ARGUMENTs have field violations."""
    return exc.field if exc.field and isinstance(exc, InvalidArgument) else None


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_proto(exc: BaseException) -> status_pb2.Status:
    """The ``google.rpc.Status`` for an exception: its code, public message and standard details."""
    code = grpc_code(exc)
    message = public_message(exc)
    status = status_pb2.Status(code=code.value[0], message=message)
    if not is_public(exc):
        status.details.append(_pack(error_details_pb2.ErrorInfo(reason="internal", domain=ERROR_DOMAIN)))
        return status
    assert isinstance(exc, TficError)
    metadata = error_metadata(exc)
    status.details.append(_pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=metadata)))
    if exc.retry_after_seconds is not None:
        status.details.append(_pack(error_details_pb2.RetryInfo(retry_delay=retry_delay(exc.retry_after_seconds))))
    field = violation_field(exc)
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        status.details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    return status


def _request_id(context: aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA:
            return str(value)
    return "-"


async def abort(context: aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    """End the call with the status of ``exc`` (for code that answers without raising, e.g. interceptors)."""
    status = rpc_status.to_status(status_proto(exc))
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _abort(context: aio.ServicerContext[Any, Any], method: str, exc: BaseException) -> None:
    if status_for(exc) is INTERNAL or not isinstance(exc, TficError):
        # The caller's request id ties this traceback to the gateway's log line and its 500 response.
        log.exception("internal error in %s (request id %s)", method, _request_id(context), exc_info=exc)
    await abort(context, exc)


class ErrorInterceptor(ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
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

            async def unary_write(request: Any, context: aio.ServicerContext[Any, Any]) -> None:
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

            async def unary_stream(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
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


# --- client side ------------------------------------------------------------------------------------------

# Codes tfic never sends but other servers may: read as the code tfic uses for the same situation.
_SAME_AS: dict[grpc.StatusCode, grpc.StatusCode] = {
    grpc.StatusCode.OUT_OF_RANGE: grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ABORTED: grpc.StatusCode.FAILED_PRECONDITION,
}

# Statuses gRPC itself produced (no tfic ErrorInfo attached): their details name internal addresses and
# library internals, which callers need not see. ``{service}`` is the called service.
_TRANSPORT_MESSAGES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "{service} is unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "{service} did not answer within the request's deadline",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "{service} is overloaded; retry later",
    grpc.StatusCode.CANCELLED: "the call to {service} was cancelled",
}


class RichStatus:
    """The standard details of a failed call, as far as it carries them (grpcio-status's ``from_call``)."""

    def __init__(self, exc: grpc.RpcError) -> None:
        self.error_info: error_details_pb2.ErrorInfo | None = None
        self.retry_after_seconds: float | None = None
        self.field_violations: list[error_details_pb2.BadRequest.FieldViolation] = []
        call: Any = exc  # a failed call's RpcError is also its grpc.Call (code, details, trailing metadata)
        try:
            status = rpc_status.from_call(call)
        except ValueError as problem:  # a Status whose code or message contradicts the call's: ignore it
            log.warning("ignoring inconsistent grpc-status-details-bin: %s", problem)
            status = None
        for packed in status.details if status is not None else ():
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                self.error_info = error_details_pb2.ErrorInfo()
                packed.Unpack(self.error_info)
            elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                packed.Unpack(retry)
                self.retry_after_seconds = retry.retry_delay.ToTimedelta().total_seconds()
            elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                self.field_violations.extend(bad.field_violations)

    @property
    def from_tfic(self) -> bool:
        return self.error_info is not None and self.error_info.domain == ERROR_DOMAIN


_RESERVED = frozenset({"field", "retry_after_seconds"})  # constructor keywords, not metadata


def exception_from_rpc(
    exc: grpc.RpcError, default_retry_after: float = 1.0, *, service: str = "the inference service"
) -> TficError:
    """The tfic exception for a failed call.

    The class comes from the status code, refined by the ``ErrorInfo`` reason that tfic's servers attach
    (``invalid_image`` → :class:`~tfic.errors.InvalidImage`, ``image_too_large`` → 413 …); the exception keeps
    that reason even when this process has no class for it, the ``ErrorInfo`` metadata as ``details``, the
    first field violation as ``field`` and the ``RetryInfo`` delay as ``retry_after_seconds``
    (``default_retry_after`` for RESOURCE_EXHAUSTED without one). A status with tfic's ErrorInfo came from
    tfic's own code and its message is shown as is; one without it came from gRPC (no connection, deadline,
    message-size limit) and gets a fixed message naming ``service``, the raw details kept as ``upstream``.
    """
    code = exc.code()
    message = exc.details() or ""
    rich = RichStatus(exc)
    base = errors.class_for_grpc_code(_SAME_AS.get(code, code).name)
    if base is None:
        return UpstreamError(errors.INTERNAL_MESSAGE, upstream=f"{code.name}: {message}")
    reason: str | None = None
    kwargs: dict[str, Any] = {}
    cls = base
    if rich.error_info is not None and rich.from_tfic:
        reason = rich.error_info.reason
        cls = errors.class_for(base, reason)
        kwargs.update((k, v) for k, v in rich.error_info.metadata.items() if k not in _RESERVED)
    elif code in _TRANSPORT_MESSAGES:
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in message:
            return errors.ImageTooLarge(f"the request is larger than {service} accepts", upstream=message)
        kwargs["upstream"] = message
        message = _TRANSPORT_MESSAGES[code].format(service=service)
    if rich.field_violations:
        kwargs["field"] = rich.field_violations[0].field
    retry = rich.retry_after_seconds
    if retry is None and issubclass(cls, errors.ResourceExhausted):
        retry = default_retry_after
    kwargs["retry_after_seconds"] = retry
    try:
        result = cls(message, **kwargs)
    except TypeError:  # a class with a constructor of its own: the general class carries the same
        result = base(message, **kwargs)
    if reason and result.reason != reason:
        result.reason = reason
    return result
