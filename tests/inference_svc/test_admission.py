"""Admission control: over --max-concurrent-requests, inference calls are refused before their request is read.

The speed of a refusal under saturation is measured in bench/inference/admission.py, not here: these tests
check what a refused and an admitted call get, on a real server whose model is held by a gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from inference_svc.admission import ADMITTED
from inference_svc.server import InferenceServer
from tests.inference_svc.support import MODEL, GatedFactory, encode, gated_server, random_image, wait_until
from tfic.errors import ResourceExhausted
from tfic.grpc_errors import exception_from_rpc
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

IMAGE = encode(random_image(0))
LIMIT = 2


@pytest.fixture
async def gated(base_path: Path) -> AsyncIterator[tuple[InferenceServer, GatedFactory]]:
    async with gated_server(base_path, max_enqueued_batches=8, max_concurrent_requests=LIMIT) as running:
        yield running


def classify(image: bytes = IMAGE) -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[image])


def predict() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([IMAGE]))
    return request


def decoded(server: InferenceServer) -> float:
    return server.metrics.registry.get_sample_value("tfic_inference_decode_seconds_count") or 0.0


def refused(method: str, server: InferenceServer) -> float:
    value: float = server.metrics.rejected.labels(method)._value.get()
    return value


async def test_over_the_limit_calls_are_refused_with_retry_info_while_admitted_ones_complete(
    gated: tuple[InferenceServer, GatedFactory],
) -> None:
    server, factory = gated
    (runtime,) = factory.runtimes
    decoded_before = decoded(server)
    runtime.gate.clear()
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        admitted = [asyncio.ensure_future(stub.Classify(classify())) for _ in range(LIMIT)]
        await wait_until(lambda: server.admission.in_flight == LIMIT, what="both calls to be admitted")

        with pytest.raises(grpc.RpcError) as info:
            await stub.Classify(classify(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-concurrent-requests" in (info.value.details() or "")
        error = exception_from_rpc(info.value)  # the google.rpc.Status: ErrorInfo and RetryInfo
        assert (type(error), error.reason, error.retry_after_seconds) == (ResourceExhausted, "resource_exhausted", 1.0)
        assert error.details == {"limit": str(LIMIT)}

        # Refused before the request is read: an empty image, INVALID_ARGUMENT once parsed, is never looked at.
        with pytest.raises(grpc.RpcError) as info:
            await stub.Classify(classify(b""), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # TensorFlow Serving's Predict shares the limit.
        predictor = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            await predictor.Predict(predict(), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (refused("Classify", server), refused("Predict", server)) == (2, 1)

        # Probes and model status are never refused, so a saturated pod stays ready and alive.
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service="tfic.v1.Classifier"), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        models = await stub.ListModels(classifier_pb2.ListModelsRequest(), timeout=10)
        assert [m.name for m in models.models] == [MODEL]
        assert server.admission.in_flight == LIMIT

        runtime.gate.set()
        answers = await asyncio.gather(*admitted)
        assert [len(a.results) for a in answers] == [1] * LIMIT
        # A slot is released when the server's handler ends, which may be just after the client has its answer.
        await wait_until(lambda: server.admission.in_flight == 0, what="the admitted calls' slots to be released")
        # Only the admitted calls were decoded.
        assert decoded(server) - decoded_before == LIMIT

        # The server keeps serving: with room again, a call is admitted, and a bad one gets its own error.
        answer = await stub.Classify(classify(), timeout=30)
        assert answer.results[0].predicted_label
        with pytest.raises(grpc.RpcError) as info:
            await stub.Classify(classify(b""), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await wait_until(lambda: server.admission.in_flight == 0, what="the failed call's slot to be released")
        assert server.metrics.requests.labels(MODEL, "Classify", "OK")._value.get() == LIMIT + 1


async def test_a_client_that_gives_up_frees_its_slot(gated: tuple[InferenceServer, GatedFactory]) -> None:
    server, factory = gated
    (runtime,) = factory.runtimes
    runtime.gate.clear()
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        calls = [stub.Classify(classify()) for _ in range(LIMIT)]  # aio calls start when made
        await wait_until(lambda: server.admission.in_flight == LIMIT, what="both calls to be admitted")
        for call in calls:
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        await wait_until(lambda: server.admission.in_flight == 0, what="the cancelled calls to leave")
        runtime.gate.set()
        answer = await stub.Classify(classify(), timeout=30)
        assert answer.results[0].predicted_label


@pytest.mark.parametrize("depth", [0, 4])
async def test_extra_accepters_take_the_calls_a_burst_brings_and_the_server_stops_with_them_outstanding(
    base_path: Path, depth: int
) -> None:
    from inference_svc import accept

    # The installed grpcio is the one accept.py was written against; if this fails, grpc's internals moved.
    assert accept.supported()
    async with gated_server(base_path, 8, max_concurrent_requests=LIMIT, accept_depth=depth) as (server, factory):
        (runtime,) = factory.runtimes
        runtime.gate.clear()
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            burst = [asyncio.ensure_future(stub.Classify(classify(), timeout=30)) for _ in range(LIMIT + 4)]
            await wait_until(lambda: server.admission.in_flight == LIMIT, what="the limit's calls to be admitted")
            await wait_until(lambda: refused("Classify", server) == 4, what="the rest of the burst to be refused")
            runtime.gate.set()
            outcomes = await asyncio.gather(*burst, return_exceptions=True)
            # TensorFlow Serving's Predict too, although its stubs register only generic handlers.
            predictor = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            before = server.accepters.accepted
            answers = await asyncio.gather(*(predictor.Predict(predict(), timeout=30) for _ in range(LIMIT)))
            assert all(a.outputs for a in answers)
            predicted_by_accepters = server.accepters.accepted - before
        codes = sorted("OK" if not isinstance(o, grpc.RpcError) else o.code().name for o in outcomes)
        assert codes == ["OK"] * LIMIT + ["RESOURCE_EXHAUSTED"] * 4  # the same answers however they are accepted
        if depth:
            # gRPC's own loop holds one request in the core and the accepters four more: most of a burst is theirs.
            assert server.accepters.accepted >= 2
            assert sorted(server.accepters.methods) == sorted(ADMITTED)
            # One of the two may take gRPC's own request; the other is an accepter's.
            assert predicted_by_accepters >= 1
        else:
            assert server.accepters.accepted == 0 and server.accepters.methods == ()
    # Leaving the context stopped the server with the accepters' requests still outstanding in the core: the
    # shutdown failed them, and every accepter ended.
    await wait_until(lambda: not server.accepters._tasks, 10, "the accepters to end")
