"""The pieces with no server needed: gRPC status and google.rpc details → HTTP, streamed body limit, settings."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import time
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status
from starlette.datastructures import Headers, QueryParams
from starlette.types import Receive

import gateway
from gateway.errors import (
    BodyTooLarge,
    MethodNotAllowed,
    NotAcceptable,
    RequestTimeout,
    classify,
    error_details,
    error_response,
)
from gateway.inputs import BODY_DEADLINE_KEY, BODY_TIMED_OUT_KEY, headers, read_body, top_k
from gateway.settings import GatewaySettings
from tfic import errors
from tfic.errors import Cancelled, InvalidArgument
from tfic.grpc_errors import ERROR_DOMAIN, exception_from_rpc, grpc_code, status_proto
from tfic.settings import add_arguments, from_args

# Every gRPC code and the HTTP status it becomes (statuses gRPC itself produced: no tfic reason attached).
HTTP_FOR_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 500,
}


def rpc_error(code: grpc.StatusCode, details: str, *trailing: tuple[str, str]) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(*trailing), details=details, debug_error_string="")


@pytest.mark.parametrize("code", list(grpc.StatusCode)[1:])
def test_every_grpc_code_has_an_http_status(code: grpc.StatusCode) -> None:
    exc = exception_from_rpc(rpc_error(code, "details from upstream"))
    status, name, message, _ = classify(exc)
    assert status == HTTP_FOR_CODE[code]
    if status == 500:
        assert name == "INTERNAL"
        assert message == "internal error; see the server log"  # upstream internals are not shown
    else:
        renamed = {grpc.StatusCode.OUT_OF_RANGE: "INVALID_ARGUMENT", grpc.StatusCode.ABORTED: "FAILED_PRECONDITION"}
        assert name == renamed.get(code, code.name)


def from_server(exc: BaseException) -> aio.AioRpcError:
    """The error a client gets when a tfic server raised ``exc`` (the interceptor's Status, trailer and all)."""
    status = rpc_status.to_status(status_proto(exc))
    return aio.AioRpcError(status.code, aio.Metadata(), aio.Metadata(*status.trailing_metadata), status.details, "")


def error_info_only(code: grpc.StatusCode, message: str, reason: str) -> aio.AioRpcError:
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    rich = rpc_status.to_status(status)
    return aio.AioRpcError(rich.code, aio.Metadata(), aio.Metadata(*rich.trailing_metadata), rich.details, "")


def test_error_info_refines_the_status_and_keeps_the_message() -> None:
    cases = {
        errors.InvalidImage("image 0: invalid_image"): (400, "invalid_image"),
        errors.UnsupportedFormat("image 0: unsupported_format"): (415, "unsupported_format"),
        errors.ImageTooLarge("image 0: image_too_large"): (413, "image_too_large"),
        errors.ModelNotFound("model 'x' is not served here", model="x"): (404, "model_not_found"),
    }
    for raised, (status, reason) in cases.items():
        exc = exception_from_rpc(from_server(raised))
        assert type(exc) is type(raised)
        # The body names 413 and 415 for themselves; the gRPC code stays INVALID_ARGUMENT.
        assert classify(exc) == (status, errors.status_for(raised).name, raised.message, reason)
        assert grpc_code(exc) is grpc.StatusCode.INVALID_ARGUMENT or status == 404
    # A reason that does not fit the code is ignored.
    exc = exception_from_rpc(error_info_only(grpc.StatusCode.NOT_FOUND, "x", "invalid_image"))
    assert classify(exc)[0] == 404


def test_transport_statuses_hide_their_details() -> None:
    unavailable = rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; ipv4:10.0.0.7:8500")
    assert "10.0.0.7" not in classify(exception_from_rpc(unavailable))[2]
    too_big = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 4)")
    assert classify(exception_from_rpc(too_big))[:2] == (413, "CONTENT_TOO_LARGE")
    # Statuses tfic's servers raised (an ErrorInfo attached) keep their message.
    busy = from_server(errors.Unavailable("model 'm' has no version available yet"))
    assert classify(exception_from_rpc(busy))[2] == "model 'm' has no version available yet"


def test_retry_after_comes_from_retry_info_or_the_setting() -> None:
    full = from_server(errors.ResourceExhausted("queue full", retry_after_seconds=7))
    response = error_response(exception_from_rpc(full, default_retry_after=2), retry_after_seconds=2)
    assert (response.status_code, response.headers["retry-after"]) == (429, "7")
    plain = error_info_only(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", "resource_exhausted")
    assert (
        error_response(exception_from_rpc(plain, default_retry_after=2), retry_after_seconds=2).headers["retry-after"]
        == "2"
    )
    down = rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert error_response(exception_from_rpc(down), retry_after_seconds=5).headers["retry-after"] == "5"
    # A sub-second hint is rounded up, never to "retry at once".
    unloading = from_server(errors.Unavailable("unloading", retry_after_seconds=0.2))
    assert error_response(exception_from_rpc(unloading), retry_after_seconds=5).headers["retry-after"] == "1"


def test_the_body_carries_the_same_details_as_the_status() -> None:
    raised = errors.InvalidHyperparameter("learning_rate: expected a number", name="learning_rate")
    body = json.loads(bytes(error_response(exception_from_rpc(from_server(raised)), retry_after_seconds=1).body))
    assert body["error"]["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "invalid_hyperparameter",
            "domain": ERROR_DOMAIN,
            "metadata": {"name": "learning_rate"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [
                {"field": "hyperparameters.learning_rate", "description": "learning_rate: expected a number"}
            ],
        },
    ]


CODE_NAMES = {code.name for code in grpc.StatusCode}


@pytest.mark.parametrize(
    "exc",
    [
        errors.InvalidImage("bad", field="images[3]", model="m", version=2, pinned=True),
        errors.ResourceExhausted("full", retry_after_seconds=0.25),
        errors.Unavailable("loading", model="m"),
        errors.ImageTooLarge("too big"),
        MethodNotAllowed("GET is not allowed"),
        errors.NotFound("no such job", field="job"),  # a field, but not an INVALID_ARGUMENT: no BadRequest
    ],
)
def test_the_body_details_are_protobufs_json_mapping_of_the_status_details(exc: errors.TficError) -> None:
    assert error_details(exc) == [json_format.MessageToDict(packed) for packed in status_proto(exc).details]


def test_the_gateway_has_no_status_table_of_its_own() -> None:
    """Its HTTP-only cases live in tfic.errors' one table; nothing in the gateway maps classes or codes."""
    for info in pkgutil.iter_modules(gateway.__path__, "gateway."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, Mapping) and value:
                keys, values = list(value), list(value.values())
                assert not any(isinstance(k, type) and issubclass(k, BaseException) for k in keys), (info.name, name)
                # e.g. {405: "INVALID_ARGUMENT"} or {"NOT_FOUND": 404}: a second table of codes
                named = [v for v in [*keys, *values] if isinstance(v, str) and v in CODE_NAMES]
                assert not named, (info.name, name, named)
    assert errors.TABLE[NotAcceptable] == errors.Status("INVALID_ARGUMENT", 406, "NOT_ACCEPTABLE")
    assert errors.TABLE[MethodNotAllowed] == errors.Status("INVALID_ARGUMENT", 405, "METHOD_NOT_ALLOWED")
    assert BodyTooLarge not in errors.TABLE and errors.status_for(BodyTooLarge("x")).http_status == 413


def test_unknown_exceptions_are_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    response = error_response(RuntimeError("secret internal detail"), retry_after_seconds=1, request_id="r-1")
    assert response.status_code == 500
    assert (
        bytes(response.body)
        == b'{"error":{"code":500,"status":"INTERNAL","message":"internal error; see the server log"}}'
    )
    assert "secret internal detail" in caplog.text and "r-1" in caplog.text


def body_stream(chunks: list[bytes], *, disconnect_after: int | None = None) -> tuple[Receive, list[int]]:
    """An ASGI ``receive`` handing out ``chunks`` (then ``http.disconnect`` if asked); the list counts calls."""
    handed: list[int] = [0]

    async def receive() -> dict[str, Any]:
        i = handed[0]
        handed[0] += 1
        if disconnect_after is not None and i >= disconnect_after:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    return receive, handed


def soon() -> float:
    return time.monotonic() + 60


async def test_body_limit_is_enforced_while_streaming() -> None:
    receive, handed = body_stream([b"x" * 400] * 100)
    with pytest.raises(BodyTooLarge, match="exceeds the limit of 1000 bytes"):
        await read_body({}, receive, None, 1000, soon())
    assert handed[0] == 3  # stopped at the chunk that crossed the limit, 97 chunks never read


async def test_declared_length_over_the_limit_reads_nothing() -> None:
    receive, handed = body_stream([b"x" * 5000])
    with pytest.raises(BodyTooLarge, match="5000 bytes; the limit is 1000"):
        await read_body({}, receive, "5000", 1000, soon())
    assert handed[0] == 0


async def test_body_within_the_limit() -> None:
    receive, _ = body_stream([b"ab", b"cd", b""])
    assert await read_body({}, receive, None, 4, soon()) == b"abcd"


async def test_a_body_still_arriving_after_its_deadline_is_a_timeout() -> None:
    receive, handed = body_stream([b"ab", b"cd", b"ef"])
    with pytest.raises(RequestTimeout, match="did not arrive within the test's limit"):
        await read_body({}, receive, None, 100, time.monotonic() - 1, "within the test's limit")
    assert handed[0] == 1
    # The connection sweep marks a late body in the scope (gateway.connections) and wakes the read.
    scope: dict[str, Any] = {BODY_TIMED_OUT_KEY: True}
    receive, _ = body_stream([b"ab", b"cd"])
    with pytest.raises(RequestTimeout):
        await read_body(scope, receive, None, 100, soon())
    assert scope[BODY_DEADLINE_KEY] > time.monotonic()
    receive, _ = body_stream([b"ab"])  # a body complete in its first message is read whatever the clock says
    assert await read_body({}, receive, None, 100, time.monotonic() - 1) == b"ab"


async def test_a_client_gone_mid_body_is_cancelled_not_a_short_image() -> None:
    receive, _ = body_stream([b"ab", b"cd", b"ef"], disconnect_after=2)
    with pytest.raises(Cancelled, match="disconnected"):
        await read_body({}, receive, None, 100, soon())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", 0),
        (b"top_k=", 0),
        (b"top_k=3", 3),
        (b"a=1&top_k=2&top_k=5", 5),
        (b"top%5Fk=4", 4),
        (b"%74op_k=6", 6),
        (b"xtop_k=9", 0),
    ],
)
def test_top_k_reads_the_query_string_as_starlette_does(query: bytes, expected: int) -> None:
    assert top_k(query) == expected
    assert QueryParams(query).get("top_k", "") in ("", str(expected))


@pytest.mark.parametrize("query", [b"top_k=-1", b"top_k=two", b"top_k=2147483648"])
def test_bad_top_k_names_the_parameter(query: bytes) -> None:
    with pytest.raises(InvalidArgument, match="top_k must be a non-negative integer"):
        top_k(query)


def test_headers_first_of_repeated_wins_as_in_starlette() -> None:
    raw = [(b"accept", b"application/json"), (b"Accept", b"text/csv"), (b"x-tfic-model", b"m\xe9")]
    scope = {"type": "http", "headers": raw}
    found = headers(scope)
    assert found == {"accept": "application/json", "x-tfic-model": "m\xe9"}
    assert Headers(raw=raw).get("accept") == found["accept"]


def parse(argv: list[str], environ: dict[str, str]) -> GatewaySettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser, GatewaySettings)
    return from_args(GatewaySettings, parser.parse_args(argv), environ)


def test_settings_defaults() -> None:
    assert parse([], {}) == GatewaySettings()
    assert GatewaySettings().port == 8080 and GatewaySettings().auth_token is None


def test_settings_from_env_and_flags() -> None:
    environ = {
        "TFIC_GATEWAY_PORT": "9000",
        "TFIC_GATEWAY_INFERENCE": "dns:///inference.ns.svc:8500",
        "TFIC_GATEWAY_DEFAULT_MODEL": "flowers",
        "TFIC_GATEWAY_MAX_BODY_BYTES": "1024",
        "TFIC_GATEWAY_TIMEOUT_SECONDS": "2.5",
        "TFIC_GATEWAY_AUTH_TOKEN": "t",
        "TFIC_GATEWAY_DEFAULT_ACCEPT": "application/json;verbose",
    }
    settings = parse(["--port", "9001"], environ)
    assert settings == GatewaySettings(
        port=9001,
        inference="dns:///inference.ns.svc:8500",
        default_model="flowers",
        max_body_bytes=1024,
        timeout_seconds=2.5,
        auth_token="t",
        default_accept="application/json;verbose",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"port": 70000},
        {"max_body_bytes": 0},
        {"timeout_seconds": 0},
        {"default_accept": "text/csv"},
        {"auth_token": " "},
    ],
)
def test_invalid_settings(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        GatewaySettings(**changes)
