"""What an HTTP request carries, parsed and checked: body (size-limited while streaming), top_k, deadline, model.

Every check raises a :class:`tfic.errors.TficError` subclass with a message naming the header or
parameter, so the error handler answers with the right status.
"""

from __future__ import annotations

import math
import time

from starlette.requests import ClientDisconnect, Request

from gateway.errors import BodyTooLarge
from gateway.upstream import Call, ModelRef
from tfic.errors import Cancelled, InvalidArgument

REQUEST_ID_KEY = "tfic.request_id"
START_KEY = "tfic.start"

MODEL_HEADER = "x-tfic-model"
SAGEMAKER_MODEL_HEADER = "x-amzn-sagemaker-target-model"
TIMEOUT_HEADER = "x-request-timeout"  # seconds, e.g. "2.5"
ENVOY_TIMEOUT_HEADER = "x-envoy-expected-rq-timeout-ms"  # set by Envoy / Istio on upstream requests


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before any byte is read; a chunked or
    understated body is refused when the running total passes the limit, without buffering the rest.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidArgument(f"invalid Content-Length {declared!r}") from None
        if size > limit:
            raise BodyTooLarge(f"request body is {size} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Cancelled("the client disconnected while sending the request") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def top_k(request: Request) -> int:
    """The ``top_k`` query parameter: 0 (absent) for every class in label order, K > 0 for the K best."""
    raw = request.query_params.get("top_k")
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"top_k must be a non-negative integer, got {raw!r}") from None
    if value < 0 or value > 2**31 - 1:
        raise InvalidArgument(f"top_k must be a non-negative integer, got {raw!r}")
    return value


def _timeout_header(request: Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    scale, name = 1.0, TIMEOUT_HEADER
    if raw is None:
        raw, scale, name = request.headers.get(ENVOY_TIMEOUT_HEADER), 0.001, ENVOY_TIMEOUT_HEADER
    if raw is None:
        return None
    try:
        value = float(raw) * scale
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive number, got {raw!r}")
    return value


def call_for(request: Request, max_timeout: float) -> Call:
    """The request's id and deadline: the earlier of the gateway's timeout and a timeout header, from arrival."""
    start: float = request.scope.get(START_KEY, time.monotonic())
    timeout = _timeout_header(request)
    budget = max_timeout if timeout is None else min(timeout, max_timeout)
    return Call(request_id=request.scope.get(REQUEST_ID_KEY, ""), deadline=start + budget)


def model_header(request: Request) -> str | None:
    """The model named by ``X-Tfic-Model`` or SageMaker's ``X-Amzn-SageMaker-Target-Model`` (``name.tar.gz`` → name)."""
    name = request.headers.get(MODEL_HEADER)
    if name is None:
        target = request.headers.get(SAGEMAKER_MODEL_HEADER)
        if target is None:
            return None
        name = target.rsplit("/", 1)[-1].removesuffix(".tar.gz").removesuffix(".tgz")
    name = name.strip()
    if not name:
        raise InvalidArgument("the model header is empty")
    return name


INT64_MAX = 2**63 - 1


def path_model(request: Request) -> ModelRef | None:
    """The model named by the path (``{name}`` with ``{version}`` or ``{label}``), None on ``/invocations``."""
    params = request.path_params
    name: str | None = params.get("name")
    if name is None:
        return None
    version: int | None = params.get("version")
    if version is not None and not 0 < version <= INT64_MAX:
        raise InvalidArgument(f"version must be between 1 and {INT64_MAX}, got {version}")
    return ModelRef(name, version, params.get("label", ""))
