"""Admission control: at most ``limit`` inference calls are handled at once; more are refused before their
request is read.

Under overload a refusal must be cheap and immediate, or it waits behind the work it protects: with the old
checks (decode queue, batch queue) a request was received, parsed, routed and often decoded before it could be
refused, and on a saturated event loop that took 80–130 ms at the median. Here the count is taken where gRPC
hands the call to Python, in a server interceptor, before the request message is read from the transport: an
admitted call's method is served as a *request-streaming* handler that reads its one message itself
(``context.read()``) after the check, and a refused call ends with RESOURCE_EXHAUSTED — a ``RetryInfo``
included, the status built once — without its bytes ever being read or parsed. On the wire a unary call and
a request stream of one message are the same HTTP/2 stream, so clients see no difference.

The counter is global (the model a request is for is inside the unread message) and is touched on the event
loop only, so a plain integer suffices. It covers the methods that do inference work (:data:`ADMITTED`);
health checks, reflection and the model-status calls are never refused, so probes keep answering under load.
gRPC's own ``maximum_concurrent_rpcs`` would refuse in the same place, but counts every method (health
probes too) and sends no retry delay, so it is not used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.message import Message
from grpc import aio
from grpc_status import rpc_status

from inference_svc.metrics import Metrics
from tfic.errors import ResourceExhausted
from tfic.grpc_errors import status_proto
from tfic.grpc_typing import ServerInterceptor

ADMITTED = frozenset(
    {
        "/tfic.v1.Classifier/Classify",
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/Classify",
    }
)

if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]


class AdmissionInterceptor(ServerInterceptor):
    """Refuses calls to :data:`ADMITTED` methods while ``limit`` of them are being handled (``limit`` 0: never)."""

    def __init__(self, limit: int, metrics: Metrics, retry_after_seconds: float = 1.0) -> None:
        self.limit = limit
        self.in_flight = 0
        self._metrics = metrics
        self._handlers: dict[str, _Handler] = {}  # per method, built once
        refusal = ResourceExhausted(
            f"the server is handling {limit} inference requests, its limit (--max-concurrent-requests); retry later",
            retry_after_seconds=retry_after_seconds,
            limit=limit,
        )
        status = rpc_status.to_status(status_proto(refusal))
        self._refusal = (status.code, status.details, status.trailing_metadata)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        method = handler_call_details.method
        if self.limit <= 0 or method not in ADMITTED:
            return await continuation(handler_call_details)
        handler = self._handlers.get(method)
        if handler is None:
            inner = await continuation(handler_call_details)
            if inner is None or inner.unary_unary is None:
                return inner
            handler = self._handlers[method] = self._admitting(inner, method.rpartition("/")[2])
        return handler

    def _admitting(self, inner: _Handler, method: str) -> _Handler:
        """``inner`` (unary) served as a request stream, so the count is checked before its message is read.

        gRPC calls this handler straight after the interceptor, with no wait in between, and it is the only
        place that counts: check and increment happen in one step of the event loop, so the limit is exact.
        """
        # The servicers' methods are coroutines (grpc-stubs type handlers as the sync API's).
        call = cast(Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]], inner.unary_unary)
        refused = self._metrics.child(self._metrics.rejected, method)

        async def admitted(requests: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]) -> Any:
            if self.in_flight >= self.limit:
                refused.inc()
                await context.abort(*self._refusal)
            self.in_flight += 1
            try:
                request = await context.read()
                if not isinstance(request, Message):  # grpc.aio.EOF: the client left before sending its request
                    return None
                return await call(request, context)
            finally:
                self.in_flight -= 1

        return grpc.stream_unary_rpc_method_handler(admitted, inner.request_deserializer, inner.response_serializer)
