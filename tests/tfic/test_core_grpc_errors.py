"""The one error interceptor: tfic errors become precise statuses with standard ``google.rpc`` details;
other errors never leak. The details are read here with grpcio-status alone, as any gRPC client would."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tfic import errors
from tfic.grpc_errors import ERROR_DOMAIN, ErrorInterceptor, UpstreamError, exception_from_rpc

rpc_status_aio = rpc_status.aio  # type: ignore[attr-defined]  # grpc_status-stubs predate rpc_status.aio

RAISED: dict[bytes, Exception] = {
    b"too_large": errors.ImageTooLarge("image is 9 bytes; the limit is 1 bytes", field="images[0]", model="m"),
    b"full": errors.ResourceExhausted(
        "model m: the batch queue is full; retry later", retry_after_seconds=7, model="m"
    ),
    b"hyperparameter": errors.InvalidHyperparameter("learning_rate: expected a number, got 'x'", name="learning_rate"),
    b"unloading": errors.Unavailable("model m: this version is unloading; retry", retry_after_seconds=1.0),
    b"bug": RuntimeError("secret internal detail"),
}


@pytest.fixture
async def server() -> AsyncIterator[str]:
    srv = aio.server(interceptors=[ErrorInterceptor()])
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc_health-stubs predate health.aio
    await servicer.set("ok", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)

    async def boom(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        raise RAISED[request]

    async def stream_boom(request: bytes, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        yield b"first"
        raise errors.ImageTooLarge("too big")

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


async def fail(server: str, request: bytes) -> aio.AioRpcError:
    async with aio.insecure_channel(server) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary("/test.Boom/Unary", None, None)(request)
    return info.value


def details_of(status: status_pb2.Status) -> dict[str, object]:
    """Each detail unpacked, by type name (what a client with only the googleapis protos sees)."""
    found: dict[str, object] = {}
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.BadRequest):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    assert len(found) == len(status.details)
    return found


async def test_a_plain_grpc_client_reads_the_standard_details(server: str) -> None:
    async with aio.insecure_channel(server) as channel:
        call = channel.unary_unary("/test.Boom/Unary", None, None)(b"too_large")
        with pytest.raises(aio.AioRpcError) as info:
            await call
        status = await rpc_status_aio.from_call(call)
    exc = info.value
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.details() == "image is 9 bytes; the limit is 1 bytes"
    assert status is not None and status.code == code_pb2.INVALID_ARGUMENT
    found = details_of(status)
    error_info = found["ErrorInfo"]
    assert isinstance(error_info, error_details_pb2.ErrorInfo)
    assert (error_info.reason, error_info.domain, dict(error_info.metadata)) == (
        "image_too_large",
        ERROR_DOMAIN,
        {"model": "m"},
    )
    bad = found["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [("images[0]", exc.details())]
    assert "RetryInfo" not in found
    # The home-made trailers are gone: the Status is the only carrier.
    # grpc-stubs type AioRpcError's trailers as grpc's tuple of _Metadatum; at run time they are (key, value) pairs.
    trailers: Any = exc.trailing_metadata()
    assert {key for key, _ in trailers or ()} == {"grpc-status-details-bin"}


async def test_retry_info_and_field_violations(server: str) -> None:
    full = details_of(rpc_status.from_call(await fail(server, b"full")))  # type: ignore[arg-type]
    retry = full["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToTimedelta().total_seconds() == 7
    assert "BadRequest" not in full  # not an INVALID_ARGUMENT
    hyper = details_of(rpc_status.from_call(await fail(server, b"hyperparameter")))  # type: ignore[arg-type]
    bad = hyper["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["hyperparameters.learning_rate"]
    info = hyper["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, dict(info.metadata)) == ("invalid_hyperparameter", {"name": "learning_rate"})


async def test_internal_errors_say_nothing(server: str) -> None:
    exc = await fail(server, b"bug")
    assert exc.code() == grpc.StatusCode.INTERNAL
    assert exc.details() == errors.INTERNAL_MESSAGE
    found = details_of(rpc_status.from_call(exc))  # type: ignore[arg-type]
    info = found["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, dict(info.metadata)) == ("internal", {})
    assert set(found) == {"ErrorInfo"}
    assert isinstance(exception_from_rpc(exc), UpstreamError)


async def test_the_client_rebuilds_the_same_exception(server: str) -> None:
    too_large = exception_from_rpc(await fail(server, b"too_large"))
    assert type(too_large) is errors.ImageTooLarge
    assert (too_large.message, too_large.field, too_large.details) == (
        "image is 9 bytes; the limit is 1 bytes",
        "images[0]",
        {"model": "m"},
    )
    assert too_large.retry_after_seconds is None
    full = exception_from_rpc(await fail(server, b"full"), default_retry_after=2)
    assert type(full) is errors.ResourceExhausted and full.retry_after_seconds == 7
    hyper = exception_from_rpc(await fail(server, b"hyperparameter"))
    assert type(hyper) is errors.InvalidHyperparameter and hyper.field == "hyperparameters.learning_rate"
    unloading = exception_from_rpc(await fail(server, b"unloading"))
    assert type(unloading) is errors.Unavailable and unloading.retry_after_seconds == 1.0


async def test_streams_end_with_the_same_status(server: str) -> None:
    async with aio.insecure_channel(server) as channel:
        call = channel.unary_stream("/test.Boom/Stream", None, None)(b"")
        assert await call.read() == b"first"
        with pytest.raises(aio.AioRpcError) as info:
            await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert type(exception_from_rpc(info.value)) is errors.ImageTooLarge


def rpc_error(rich: Any) -> aio.AioRpcError:
    """The error a client would see for ``rich`` (a grpc_status.rpc_status.to_status result)."""
    trailing = aio.Metadata(*rich.trailing_metadata)
    return aio.AioRpcError(rich.code, aio.Metadata(), trailing, details=rich.details, debug_error_string="")


def test_a_reason_this_process_has_no_class_for_is_kept() -> None:
    status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="no weights")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="out_of_teabags", domain=ERROR_DOMAIN))
    rich = rpc_status.to_status(status)
    exc = aio.AioRpcError(
        rich.code, aio.Metadata(), aio.Metadata(*rich.trailing_metadata), details=rich.details, debug_error_string=""
    )
    error = exception_from_rpc(exc)
    assert (type(error), error.reason, error.message) == (
        errors.FailedPrecondition,
        "out_of_teabags",
        "no weights",
    )
    # Another domain's reason is not ours to interpret.
    status.details[0].Pack(error_details_pb2.ErrorInfo(reason="model_not_found", domain="example.com"))
    status.code, status.message = code_pb2.NOT_FOUND, "x"
    rich = rpc_status.to_status(status)
    exc = aio.AioRpcError(
        rich.code, aio.Metadata(), aio.Metadata(*rich.trailing_metadata), details=rich.details, debug_error_string=""
    )
    assert type(exception_from_rpc(exc)) is errors.NotFound


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
        unary = channel.unary_unary("/test.Boom/Unary", None, None)
        with caplog.at_level(logging.ERROR, logger="tfic.grpc_errors"), pytest.raises(aio.AioRpcError):
            await unary(b"bug", metadata=(("x-request-id", "req-42"),))
    (record,) = [r for r in caplog.records if r.name == "tfic.grpc_errors"]
    assert "/test.Boom/Unary" in record.getMessage() and "request id req-42" in record.getMessage()
    assert record.exc_info is not None and "secret internal detail" in str(record.exc_info[1])
