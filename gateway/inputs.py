"""What an HTTP request carries, parsed and checked: body (size-limited while streaming), top_k, deadline, model.

The functions take the ASGI pieces (scope, headers by lower-case name, ``receive``) rather than a
Starlette ``Request``, so the invocation hot path (:mod:`gateway.invocations`, pure ASGI) and the
Starlette routes share them. Every check raises a :class:`tfic.errors.TficError` subclass with a
message naming the header or parameter, so the error handler answers with the right status.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope

from gateway.errors import BodyTooLarge, RequestTimeout
from gateway.upstream import Call, ModelRef
from tfic.errors import Cancelled, InvalidArgument

REQUEST_ID_KEY = "tfic.request_id"
START_KEY = "tfic.start"
BODY_DEADLINE_KEY = "tfic.body_deadline"  # set by read_body, read by gateway.connections' deadline sweep
BODY_TIMED_OUT_KEY = "tfic.body_timed_out"  # set by the sweep when the body is late

MODEL_HEADER = "x-tfic-model"
SAGEMAKER_MODEL_HEADER = "x-amzn-sagemaker-target-model"
TIMEOUT_HEADER = "x-request-timeout"  # seconds, e.g. "2.5"
ENVOY_TIMEOUT_HEADER = "x-envoy-expected-rq-timeout-ms"  # set by Envoy / Istio on upstream requests

Headers = Mapping[str, str]  # by lower-case name: a dict from :func:`headers`, or Starlette's ``Headers``


def headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; the first of repeated ones wins, as in Starlette's ``Headers``."""
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name not in found:
            found[name] = value.decode("latin-1")
    return found


def body_deadline(scope: Scope, call: Call, body_timeout: float) -> tuple[float, str]:
    """When the body must have arrived (``time.monotonic()``): ``body_timeout`` after the request's headers, or
    the request's deadline if that is earlier; and how to say which, for the 408's message."""
    start: float = scope.get(START_KEY) or time.monotonic()
    own = start + body_timeout
    if own <= call.deadline:
        return own, f"within --body-timeout-seconds ({body_timeout:g} s)"
    return call.deadline, f"within the request's deadline ({call.deadline - start:.3g} s)"


async def read_body(
    scope: Scope, receive: Receive, declared: str | None, limit: int, deadline: float, why: str = "in time"
) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes, and with 408 when
    it has not arrived by ``deadline`` (``time.monotonic()``, from :func:`body_deadline`; ``why`` says whose).

    The deadline is checked as each chunk arrives, and a read that waits past it is woken by the gateway's
    connection sweep (:mod:`gateway.connections`, which finds the deadline in the scope), not by a timer per
    request, which cost several times the rest of this function.

    ``declared`` is the Content-Length header. A declared length over the limit is refused before any
    byte is read; a chunked or understated body is refused when the running total passes the limit,
    without buffering the rest. Both refusals close the connection (the rest of the body is not read), so
    a client trickling its body holds the connection no longer than the deadline.
    """
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidArgument(f"invalid Content-Length {declared!r}") from None
        if size > limit:
            raise BodyTooLarge(f"request body is {size} bytes; the limit is {limit} bytes")
    scope[BODY_DEADLINE_KEY] = deadline
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Cancelled("the client disconnected while sending the request")
        if message.get("more_body", False) and (scope.get(BODY_TIMED_OUT_KEY) or time.monotonic() >= deadline):
            raise RequestTimeout(f"the request body did not arrive {why}")
        chunk: bytes = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


def top_k(query_string: bytes) -> int:
    """The ``top_k`` query parameter: 0 (absent) for every class in label order, K > 0 for the K best.

    Repeated, the last one counts (as Starlette's ``QueryParams.get``).
    """
    if not query_string:
        return 0
    raw: str | None = None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == "top_k":
            raw = value
    if raw is None or raw == "":
        return 0
    try:
        value_int = int(raw)
    except ValueError:
        raise InvalidArgument(f"top_k must be a non-negative integer, got {raw!r}") from None
    if value_int < 0 or value_int > 2**31 - 1:
        raise InvalidArgument(f"top_k must be a non-negative integer, got {raw!r}")
    return value_int


def _timeout_header(headers: Headers) -> float | None:
    raw = headers.get(TIMEOUT_HEADER)
    scale, name = 1.0, TIMEOUT_HEADER
    if raw is None:
        raw, scale, name = headers.get(ENVOY_TIMEOUT_HEADER), 0.001, ENVOY_TIMEOUT_HEADER
    if raw is None:
        return None
    try:
        value = float(raw) * scale
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive number, got {raw!r}")
    return value


def call_for(scope: Scope, headers: Headers, max_timeout: float) -> Call:
    """The request's id and deadline: the earlier of the gateway's timeout and a timeout header, from arrival."""
    start: float = scope.get(START_KEY) or time.monotonic()
    timeout = _timeout_header(headers)
    budget = max_timeout if timeout is None else min(timeout, max_timeout)
    return Call(request_id=scope.get(REQUEST_ID_KEY, ""), deadline=start + budget)


def model_header(headers: Headers) -> str | None:
    """The model named by ``X-Tfic-Model`` or SageMaker's ``X-Amzn-SageMaker-Target-Model`` (``name.tar.gz`` → name)."""
    name = headers.get(MODEL_HEADER)
    if name is None:
        target = headers.get(SAGEMAKER_MODEL_HEADER)
        if target is None:
            return None
        name = target.rsplit("/", 1)[-1].removesuffix(".tar.gz").removesuffix(".tgz")
    name = name.strip()
    if not name:
        raise InvalidArgument("the model header is empty")
    return name


INT64_MAX = 2**63 - 1


def path_model(path_params: Mapping[str, Any]) -> ModelRef | None:
    """The model named by the path (``{name}`` with ``{version}`` or ``{label}``), None on ``/invocations``."""
    name: str | None = path_params.get("name")
    if name is None:
        return None
    version: int | None = path_params.get("version")
    if version is not None and not 0 < version <= INT64_MAX:
        raise InvalidArgument(f"version must be between 1 and {INT64_MAX}, got {version}")
    return ModelRef(name, version, path_params.get("label", ""))
