"""A full batch queue answers RESOURCE_EXHAUSTED at once; expired deadlines never reach the model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from inference_svc.server import InferenceServer
from tests.inference_svc.support import (
    MODEL,
    GatedFactory,
    encode,
    gated_server,
    random_image,
    wait_until,
)
from tfic.errors import ResourceExhausted
from tfic.grpc_errors import exception_from_rpc
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

IMAGE = encode(random_image(0))


@pytest.fixture
async def gated(base_path: Path) -> AsyncIterator[tuple[InferenceServer, GatedFactory]]:
    async with gated_server(base_path, max_enqueued_batches=1) as running:
        yield running


def request(n: int = 1) -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[IMAGE] * n)


async def test_full_queue_gives_resource_exhausted(gated: tuple[InferenceServer, GatedFactory]) -> None:
    server, factory = gated
    (runtime,) = factory.runtimes
    (batcher,) = server.repository.batchers(MODEL)
    runtime.gate.clear()
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        running = asyncio.ensure_future(stub.Classify(request(2)))
        await wait_until(lambda: batcher.running == 1, what="the batch thread to be busy")
        queued = asyncio.ensure_future(stub.Classify(request(2)))
        await wait_until(lambda: batcher.queued == 1, what="the queue to fill")
        with pytest.raises(grpc.RpcError) as info:
            await stub.Classify(request(1))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in (info.value.details() or "")
        error = exception_from_rpc(info.value)  # from the google.rpc.Status: ErrorInfo and RetryInfo
        assert (type(error), error.reason, error.retry_after_seconds) == (ResourceExhausted, "resource_exhausted", 1.0)
        assert error.details == {"model": MODEL}
        assert server.metrics.queue_depth.labels(MODEL)._value.get() == 1
        runtime.gate.set()
        done = await asyncio.gather(running, queued)
        assert [len(r.results) for r in done] == [2, 2]
        assert server.metrics.requests.labels(MODEL, "Classify", "RESOURCE_EXHAUSTED")._value.get() == 1
        assert server.metrics.queue_depth.labels(MODEL)._value.get() == 0


async def test_a_request_whose_deadline_passes_in_the_queue_never_runs(
    gated: tuple[InferenceServer, GatedFactory],
) -> None:
    server, factory = gated
    (runtime,) = factory.runtimes
    (batcher,) = server.repository.batchers(MODEL)
    calls_before = len(runtime.calls)
    runtime.gate.clear()
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        running = asyncio.ensure_future(stub.Classify(request(1)))
        await wait_until(lambda: batcher.running == 1, what="the batch thread to be busy")
        with pytest.raises(grpc.RpcError) as info:
            await stub.Classify(request(1), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        runtime.gate.set()
        await running
        assert await stub.Classify(request(1))
    # The first request and the last one ran; the expired one was dropped before its batch.
    assert len(runtime.calls) - calls_before == 2
