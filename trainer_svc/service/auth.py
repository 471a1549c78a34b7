"""Optional bearer-token check for every RPC but health checks (``authorization: Bearer <token>``)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from tfic.errors import Unauthenticated
from tfic.grpc_errors import abort
from tfic.grpc_typing import ServerInterceptor

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
MESSAGE = "missing or wrong bearer token: send the metadata 'authorization: Bearer <token>'"


def _denied(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await abort(context, Unauthenticated(MESSAGE))  # the same Status as any other error

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(deny, des, ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(deny, des, ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(deny, des, ser)
    return grpc.stream_stream_rpc_method_handler(deny, des, ser)


class BearerTokenInterceptor(ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key.lower() == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler
        return _denied(handler)
