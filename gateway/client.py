"""The inference service over gRPC: one shared ``grpc.aio`` channel, protobuf converted here and nowhere else.

The channel balances round-robin over every address the target resolves to (``dns:///inference:8500``
for a headless Kubernetes service: each pod gets its share; the server's ``max_connection_age`` makes the
channel re-resolve as pods come and go) and retries UNAVAILABLE on another address. It health-checks each
address itself (gRPC client-side health checking: a ``grpc.health.v1.Health/Watch`` stream per address on
``tfic.v1.Classifier``), so a pod that turns NOT_SERVING (draining, no model loaded) leaves the rotation
the moment it says so, not when its connection ages out, and the gateway is ready while at least one
address is SERVING. Each call carries the
request's remaining deadline, its id as ``x-request-id`` metadata and, when configured, the gateway's own
credential (``authorization: Bearer`` metadata; TLS with client certificates). gRPC failures become
:class:`tfic.errors.TficError` subclasses (:func:`tfic.grpc_errors.exception_from_rpc` reads the
``google.rpc.Status`` the inference service sends: reason, retry delay, field violations), except a
refused credential, which is the gateway's misconfiguration: a 500 with the reason in the gateway's log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from gateway.upstream import Call, Classification, Inference, ModelInfo, ModelRef, Prediction, VersionInfo
from tfic import errors
from tfic.grpc_errors import REQUEST_ID_METADATA, UpstreamError, exception_from_rpc
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2, model_control_pb2, model_control_pb2_grpc

CLASSIFIER_SERVICE = "tfic.v1.Classifier"

_SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    # Needs round_robin (pick_first ignores it); a server without the health service counts as healthy.
    "healthCheckConfig": {"serviceName": CLASSIFIER_SERVICE},
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
DNS_MIN_RESOLUTION_INTERVAL_MS = 5000
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.primary_user_agent", "tfic-gateway"),
    # gRPC's DNS resolver re-resolves when a connection drops (the server's max connection age), at most
    # every 30 s by default; new pods then waited up to that long after a GOAWAY. Kubernetes' DNS answers
    # headless Services with a 5 s TTL, so re-resolving more often than that learns nothing.
    ("grpc.dns_min_time_between_resolutions_ms", DNS_MIN_RESOLUTION_INTERVAL_MS),
)
INITIAL_RECONNECT_BACKOFF = 0.1  # seconds
_LABEL_CACHE_ENTRIES = 1024


def channel_options(reconnect_max_backoff: float) -> tuple[tuple[str, Any], ...]:
    """:data:`CHANNEL_OPTIONS` with the reconnect backoff capped at ``reconnect_max_backoff`` seconds.

    gRPC's default backoff (1 s, ×1.6 per failed attempt, up to 120 s, ±20 % jitter; doc/connection-backoff.md)
    spaces attempts further apart the longer an outage lasts: after a 12 s outage the next attempt came 7 s
    after the inference service was back, after a 70 s one 18 s. Capped, the gateway tries about once per
    ``reconnect_max_backoff`` (after a short ramp from 0.1 s), so it is back within that time (+20 %) of the
    service serving again, whatever the outage's length, and a dead service sees ~1.3 connection attempts
    per second per gateway with the default 0.75 s: a refused TCP connection each, not a flood.
    """
    max_ms = max(1, round(reconnect_max_backoff * 1000))
    initial_ms = min(max_ms, round(INITIAL_RECONNECT_BACKOFF * 1000))
    return (
        *CHANNEL_OPTIONS,
        ("grpc.initial_reconnect_backoff_ms", initial_ms),
        ("grpc.max_reconnect_backoff_ms", max_ms),
    )


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
            output=v.output or "multi_class",
            threshold=v.threshold,
        )
        for v in pb.versions
    )
    return ModelInfo(name=pb.name, versions=versions)


def prediction_from_pb(pb: classifier_pb2.ClassifyResponse, labels: Sequence[str] | None = None) -> Prediction:
    """The response as plain types. The repeated fields are handed over as they are (read-only sequences),
    not copied into lists: renderers read only what their format needs, and copying every field of every
    result cost ~40 µs per request on the gateway's hot path.

    ``labels``: the answering version's labels, for a response to ``omit_labels`` (which has none)."""
    output = pb.output or "multi_class"  # an older server leaves it empty
    if labels is not None:
        return Prediction(
            model_name=pb.model_name,
            model_version=pb.model_version,
            results=[_with_labels(r, labels, output, pb.threshold) for r in pb.results],
        )
    return Prediction(
        model_name=pb.model_name,
        model_version=pb.model_version,
        results=[
            Classification(
                probabilities=r.probabilities,
                labels=r.labels,
                label_indices=r.label_indices,
                predicted_label=r.predicted_label,
                predicted_index=r.predicted_index,
                predicted_labels=r.predicted_labels,
                output=output,
                threshold=pb.threshold,
            )
            for r in pb.results
        ],
    )


def _with_labels(
    r: classifier_pb2.Classification, labels: Sequence[str], output: str, threshold: float
) -> Classification:
    if r.label_indices:  # top_k > 0: the K best, ranked (a binary model: its one column, label 1)
        indices: Sequence[int] = r.label_indices
        names: Sequence[str] = [labels[i] for i in indices]
    else:  # every class in label order
        indices, names = range(len(labels)), labels
    return Classification(
        probabilities=r.probabilities,
        labels=names,
        label_indices=indices,
        predicted_label=labels[r.predicted_index],
        predicted_index=r.predicted_index,
        predicted_labels=r.predicted_labels,
        output=output,
        threshold=threshold,
    )


def has_labels(pb: classifier_pb2.ClassifyResponse) -> bool:
    """Whether the response carries its label strings (a server older than ``omit_labels`` ignores it)."""
    return any(r.predicted_label for r in pb.results)


def spec_to_pb(model: ModelRef) -> common_pb2.ModelSpec:
    spec = common_pb2.ModelSpec(name=model.name, version_label=model.label)
    if model.version is not None:
        spec.version = model.version
    return spec


Observer = Callable[[str, str, float], None]  # (method, gRPC code name, seconds)
_REFUSED_CREDENTIAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def tls_credentials(ca: Path | None, cert: Path | None, key: Path | None) -> grpc.ChannelCredentials:
    """TLS to the inference service: verified by ``ca`` (else the system's roots), presenting ``cert`` and
    ``key`` when given (mTLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca else None,
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


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
        reconnect_max_backoff: float = 0.75,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        """``credentials``: TLS (see :func:`tls_credentials`), else plaintext; ``token`` is sent on every call as
        ``authorization: Bearer`` metadata (over plaintext too: a local or mesh-encrypted hop)."""
        self.target = target
        options = channel_options(reconnect_max_backoff)
        if channel is None:
            if credentials is None:
                channel = aio.insecure_channel(target, options=options)
            else:
                channel = aio.secure_channel(target, credentials, options=options)
        self._channel = channel
        self._auth: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._classifier = classifier_pb2_grpc.ClassifierStub(self._channel)
        self._control = model_control_pb2_grpc.ModelControlStub(self._channel)
        self._default_retry_after = default_retry_after
        self._observe = observe
        # Label strings per (model, version), fetched once with GetModel: Classify asks for none (omit_labels),
        # which for 1,000 classes is 4 KB per image on the wire instead of 33 KB. A version's labels never
        # change (a new version is a new number), so entries never go stale; the bound only caps memory.
        self._labels: dict[tuple[str, int], tuple[str, ...]] = {}

    async def _unary(self, method: str, rpc: Any, request: Any, call: Call) -> Any:
        timeout = call.remaining()
        if timeout <= 0:
            raise errors.DeadlineExceeded("the request's deadline passed before the inference service was called")
        start = time.perf_counter()
        try:
            metadata = ((REQUEST_ID_METADATA, call.request_id), *self._auth)
            response = await rpc(request, timeout=timeout, metadata=metadata)
        except aio.AioRpcError as exc:
            self._observe(method, exc.code().name, time.perf_counter() - start)
            if exc.code() in _REFUSED_CREDENTIAL:
                # The gateway's own credential, not the caller's: a 401 would tell the caller to fix it.
                raise UpstreamError(
                    errors.INTERNAL_MESSAGE,
                    upstream=f"the inference service refused the gateway's credential: {exc.code().name}: "
                    f"{exc.details()} (see --inference-auth-token, --inference-cert)",
                ) from None
            raise exception_from_rpc(exc, self._default_retry_after) from None
        self._observe(method, "OK", time.perf_counter() - start)
        return response

    async def classify(self, model: ModelRef, images: Sequence[bytes], top_k: int, call: Call) -> Prediction:
        request = classifier_pb2.ClassifyRequest(model=spec_to_pb(model), images=images, top_k=top_k, omit_labels=True)
        response = await self._unary("Classify", self._classifier.Classify, request, call)
        if has_labels(response):
            return prediction_from_pb(response)
        labels = self._labels.get((response.model_name, response.model_version))
        if labels is None:
            labels = await self._fetch_labels(response.model_name, response.model_version, call)
        if labels is None:  # the version was unloaded between the two calls: ask again, with labels
            request.omit_labels = False
            return prediction_from_pb(await self._unary("Classify", self._classifier.Classify, request, call))
        return prediction_from_pb(response, labels)

    async def _fetch_labels(self, name: str, version: int, call: Call) -> tuple[str, ...] | None:
        info = await self.get_model(name, call)
        if len(self._labels) > _LABEL_CACHE_ENTRIES:
            self._labels.clear()
        for v in info.versions:
            if v.labels:
                self._labels[(name, v.version)] = v.labels
        return self._labels.get((name, version))

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

    async def unload_model(self, name: str, version: int | None, reason: str, call: Call) -> ModelInfo:
        request = model_control_pb2.UnloadModelRequest(name=name, version=version, reason=reason)
        return model_from_pb(await self._unary("UnloadModel", self._control.UnloadModel, request, call))

    async def load_model(self, name: str, version: int | None, call: Call) -> ModelInfo:
        request = model_control_pb2.LoadModelRequest(name=name, version=version)
        return model_from_pb(await self._unary("LoadModel", self._control.LoadModel, request, call))

    async def ready(self, timeout: float) -> bool:
        """The channel is READY: at least one address is connected and SERVING by the channel's own health
        checks. One Health.Check through the balancer asked whichever pod it picked, so one draining or
        stalled pod made the gateway unready (or its probe time out) while the others served."""
        deadline = time.monotonic() + timeout
        state = self._channel.get_state(try_to_connect=True)
        # CONNECTING/IDLE: the first connection (or health answer) is on its way; TRANSIENT_FAILURE: no
        # address is up and serving now, answer at once rather than wait out the reconnect backoff.
        while state in (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                return False
            state = self._channel.get_state(try_to_connect=True)
        return state is grpc.ChannelConnectivity.READY

    async def close(self) -> None:
        await self._channel.close(None)
