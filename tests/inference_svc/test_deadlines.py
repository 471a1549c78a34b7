"""Client deadlines: every expired call is DEADLINE_EXCEEDED (never CANCELLED), counted under ``deadline`` in
the metrics, and logged below ERROR; a call the client really cancels is counted as ``cancelled``."""

from __future__ import annotations

import asyncio
import logging
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
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

IMAGE = encode(random_image(0))
CALLS = 12


@pytest.fixture
async def gated(base_path: Path) -> AsyncIterator[tuple[InferenceServer, GatedFactory]]:
    async with gated_server(base_path, max_enqueued_batches=64) as running:
        yield running


def _request() -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[IMAGE])


def _count(server: InferenceServer, code: str) -> float:
    value: float = server.metrics.requests.labels(MODEL, "Classify", code)._value.get()
    return value


def _dropped(server: InferenceServer, stage: str, reason: str) -> float:
    value: float = server.metrics.dropped.labels(stage, reason)._value.get()
    return value


async def test_expired_deadlines_are_deadline_exceeded_everywhere(
    gated: tuple[InferenceServer, GatedFactory], caplog: pytest.LogCaptureFixture
) -> None:
    server, factory = gated
    (runtime,) = factory.runtimes
    (batcher,) = server.repository.batchers(MODEL)
    runtime.gate.clear()  # the model is stuck: every call waits in the queue until its deadline
    caplog.set_level(logging.DEBUG)
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        blocker = asyncio.ensure_future(stub.Classify(_request()))  # holds the batch thread
        await wait_until(lambda: batcher.running == 1, what="the batch thread to be busy")
        calls = [stub.Classify(_request(), timeout=0.05 + 0.02 * i) for i in range(CALLS)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        codes = [r.code() if isinstance(r, grpc.RpcError) else "OK" for r in results]
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * CALLS
        await wait_until(lambda: server.metrics.in_flight._value.get() == 1, what="the expired calls to end")
        assert _count(server, "DEADLINE_EXCEEDED") == CALLS
        assert _count(server, "CANCELLED") == 0
        assert _dropped(server, "batch", "cancelled") == 0 and _dropped(server, "decode", "cancelled") == 0

        # A call the client gives up on itself, with no deadline, is a cancellation.
        cancelled = stub.Classify(_request())
        await wait_until(lambda: server.metrics.in_flight._value.get() == 2, what="the call to arrive")
        cancelled.cancel()
        await wait_until(lambda: _count(server, "CANCELLED") == 1, what="the cancellation to be counted")
        runtime.gate.set()
        await blocker
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
