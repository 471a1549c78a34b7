"""The inference service over gRPC: one shared ``grpc.aio`` channel, protobuf converted here and nowhere else.

The channel balances round-robin over every address the target resolves to (``dns:///inference:8500``
for a headless Kubernetes service: each pod gets its share; the server's ``max_connection_age`` makes the
channel re-resolve as pods come and go) and retries UNAVAILABLE on another address. Each call carries the
request's remaining deadline and its id as ``x-request-id`` metadata. gRPC failures become
:class:`tfic.errors.TficError` subclasses (see :func:`exception_from_rpc`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.errors import UpstreamError
from gateway.upstream import Call, Classification, Inference, ModelInfo, ModelRef, Prediction, VersionInfo
from tfic import errors
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

CLASSIFIER_SERVICE = "tfic.v1.Classifier"
REQUEST_ID_METADATA = "x-request-id"
REASON_METADATA = "tfic-error-reason"
RETRY_AFTER_METADATA = "retry-after"

_SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": CLASSIFIER_SERVICE}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.primary_user_agent", "tfic-gateway"),
)

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


def exception_from_rpc(exc: aio.AioRpcError, default_retry_after: float = 1.0) -> errors.TficError:
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


def _version_state(state: int) -> str:
    name: str = classifier_pb2.VersionState.Name(state)
    return name.removeprefix("VERSION_STATE_")


def model_from_pb(pb: classifier_pb2.ModelInfo) -> ModelInfo:
    versions = tuple(
        VersionInfo(
            version=v.version,
            state=_version_state(v.state),
            error=v.error,
            labels=tuple(v.labels),
            input_shape=(
                (v.input_shape.height, v.input_shape.width, v.input_shape.channels)
                if v.HasField("input_shape")
                else None
            ),
            version_labels=tuple(v.version_labels),
        )
        for v in pb.versions
    )
    return ModelInfo(name=pb.name, versions=versions)


def prediction_from_pb(pb: classifier_pb2.ClassifyResponse) -> Prediction:
    return Prediction(
        model_name=pb.model_name,
        model_version=pb.model_version,
        results=[
            Classification(
                probabilities=list(r.probabilities),
                labels=list(r.labels),
                label_indices=list(r.label_indices),
                predicted_label=r.predicted_label,
                predicted_index=r.predicted_index,
            )
            for r in pb.results
        ],
    )


def spec_to_pb(model: ModelRef) -> common_pb2.ModelSpec:
    spec = common_pb2.ModelSpec(name=model.name, version_label=model.label)
    if model.version is not None:
        spec.version = model.version
    return spec


Observer = Callable[[str, str, float], None]  # (method, gRPC code name, seconds)


def _no_observer(method: str, code: str, seconds: float) -> None:
    return None


class GrpcInference(Inference):
    """:class:`~gateway.upstream.Inference` over one ``grpc.aio`` channel; create it on the serving event loop."""

    def __init__(
        self,
        target: str,
        *,
        default_retry_after: float = 1.0,
        observe: Observer = _no_observer,
        channel: aio.Channel | None = None,
    ) -> None:
        self.target = target
        self._channel = channel or aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._classifier = classifier_pb2_grpc.ClassifierStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._default_retry_after = default_retry_after
        self._observe = observe

    async def _unary(self, method: str, rpc: Any, request: Any, call: Call) -> Any:
        timeout = call.remaining()
        if timeout <= 0:
            raise errors.DeadlineExceeded("the request's deadline passed before the inference service was called")
        start = time.perf_counter()
        try:
            response = await rpc(request, timeout=timeout, metadata=((REQUEST_ID_METADATA, call.request_id),))
        except aio.AioRpcError as exc:
            self._observe(method, exc.code().name, time.perf_counter() - start)
            raise exception_from_rpc(exc, self._default_retry_after) from None
        self._observe(method, "OK", time.perf_counter() - start)
        return response

    async def classify(self, model: ModelRef, images: Sequence[bytes], top_k: int, call: Call) -> Prediction:
        request = classifier_pb2.ClassifyRequest(model=spec_to_pb(model), images=images, top_k=top_k)
        response = await self._unary("Classify", self._classifier.Classify, request, call)
        return prediction_from_pb(response)

    async def list_models(self, call: Call) -> list[ModelInfo]:
        response = await self._unary(
            "ListModels", self._classifier.ListModels, classifier_pb2.ListModelsRequest(), call
        )
        return [model_from_pb(m) for m in response.models]

    async def get_model(self, name: str, call: Call) -> ModelInfo:
        response = await self._unary(
            "GetModel", self._classifier.GetModel, classifier_pb2.GetModelRequest(name=name), call
        )
        return model_from_pb(response)

    async def ready(self, timeout: float) -> bool:
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=CLASSIFIER_SERVICE), timeout=timeout
            )
        except aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self._channel.close(None)
