"""Map tfic exceptions to gRPC statuses in one place: a ``grpc.aio`` server interceptor.

Servicers raise :class:`tfic.errors.TficError` subclasses; this interceptor turns them into
``context.abort(code, message)``. Unknown exceptions become INTERNAL with a generic message and
the traceback in the log, so no internal detail leaks to clients.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from tfic.errors import INTERNAL, TficError, public_message, status_for

log = logging.getLogger(__name__)


def grpc_code(exc: BaseException) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, status_for(exc).grpc_code)
    return code


async def _abort(context: aio.ServicerContext, method: str, exc: BaseException) -> None:
    status = status_for(exc)
    if status is INTERNAL or not isinstance(exc, TficError):
        log.exception("internal error in %s", method, exc_info=exc)
    trailing = []
    if isinstance(exc, TficError):
        trailing.append(("tfic-error-reason", exc.reason))
        retry = getattr(exc, "retry_after_seconds", None)
        if retry is not None:
            trailing.append(("retry-after", str(max(1, round(retry)))))
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
