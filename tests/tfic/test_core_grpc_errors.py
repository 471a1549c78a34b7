"""The one error interceptor: tfic errors become precise statuses; other errors never leak."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tfic.errors import ImageTooLarge
from tfic.grpc_errors import ErrorInterceptor


@pytest.fixture
async def server() -> AsyncIterator[str]:
    srv = aio.server(interceptors=[ErrorInterceptor()])
    servicer = health.aio.HealthServicer()
    await servicer.set("ok", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)

    async def boom(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        if request == b"client":
            raise ImageTooLarge("image is 9 bytes; the limit is 1 bytes")
        raise RuntimeError("secret internal detail")

    async def stream_boom(request: bytes, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        yield b"first"
        raise ImageTooLarge("too big")

    srv.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Boom",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(boom),
                    "Stream": grpc.unary_stream_rpc_method_handler(stream_boom),
                },
            )
        ]
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield f"127.0.0.1:{port}"
    await srv.stop(None)


async def test_statuses_and_messages(server: str) -> None:
    async with aio.insecure_channel(server) as channel:
        unary = channel.unary_unary("/test.Boom/Unary")
        with pytest.raises(aio.AioRpcError) as info:
            await unary(b"client")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "image is 9 bytes; the limit is 1 bytes"
        assert ("tfic-error-reason", "image_too_large") in tuple(info.value.trailing_metadata() or ())
        with pytest.raises(aio.AioRpcError) as info:
            await unary(b"bug")
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (info.value.details() or "")
        stream = channel.unary_stream("/test.Boom/Stream")
        call = stream(b"")
        assert await call.read() == b"first"
        with pytest.raises(aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_watch_streams_through_the_interceptor(server: str) -> None:
    async with aio.insecure_channel(server) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="ok"))
        first = await call.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        call.cancel()


async def test_internal_errors_are_logged_with_the_callers_request_id(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with aio.insecure_channel(server) as channel:
        unary = channel.unary_unary("/test.Boom/Unary")
        with caplog.at_level(logging.ERROR, logger="tfic.grpc_errors"), pytest.raises(aio.AioRpcError):
            await unary(b"bug", metadata=(("x-request-id", "req-42"),))
    (record,) = [r for r in caplog.records if r.name == "tfic.grpc_errors"]
    assert "/test.Boom/Unary" in record.getMessage() and "request id req-42" in record.getMessage()
    assert record.exc_info is not None and "secret internal detail" in str(record.exc_info[1])
