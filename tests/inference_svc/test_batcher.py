"""The dynamic batcher with a real TensorFlow runtime (gated to make queues fill deterministically)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference_svc.batcher import Batcher
from inference_svc.costmodel import CostCurve
from inference_svc.metrics import Metrics
from inference_svc.runtime.tensorflow import TensorFlowRuntime
from inference_svc.settings import BatchingSettings
from tests.inference_svc.support import MODEL, SIZE, GatedRuntime, wait_until
from tfic.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from tfic.modeldir import read_metadata

SHAPE = (SIZE, SIZE, 3)


@pytest.fixture(scope="module")
def real_runtime(model_store: Path) -> Iterator[TensorFlowRuntime]:
    path = model_store / MODEL / "1"
    runtime = TensorFlowRuntime(path, read_metadata(path))
    yield runtime


@pytest.fixture
def runtime(real_runtime: TensorFlowRuntime) -> Iterator[GatedRuntime]:
    gated = GatedRuntime(real_runtime)
    yield gated
    gated.gate.set()


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE)).astype(np.float32)


async def start_held_batch(
    runtime: GatedRuntime, settings: BatchingSettings, first: np.ndarray
) -> tuple[Batcher, asyncio.Future[np.ndarray]]:
    """A batcher whose first batch (``first``) has started and is held at the gate: what comes next queues."""
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE)
    runtime.gate.clear()
    running = asyncio.ensure_future(batcher.submit(first))
    await wait_until(lambda: batcher.running == 1, what="a running batch")
    return batcher, running


async def test_lone_request_does_not_wait_for_the_timeout(runtime: GatedRuntime) -> None:
    batcher = Batcher(
        MODEL, runtime.predict, BatchingSettings(max_batch_size=8, batch_timeout_micros=60_000_000), SHAPE
    )
    start = time.monotonic()
    out = await asyncio.wait_for(batcher.submit(images(1)), timeout=30)
    assert time.monotonic() - start < 30
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out, runtime.inner.predict(images(1)), atol=1e-6)
    assert runtime.calls == [1]
    await batcher.close()


async def test_requests_queued_behind_a_running_batch_share_one_padded_batch(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(
        max_batch_size=8, batch_timeout_micros=0, allowed_batch_sizes=(2, 4, 8), num_batch_threads=1
    )
    metrics = Metrics()
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE, metrics)
    runtime.gate.clear()
    first = asyncio.ensure_future(batcher.submit(images(1, seed=1)))
    await wait_until(lambda: runtime.calls == [2], what="the first batch to start")
    queued = [asyncio.ensure_future(batcher.submit(images(1, seed=10 + i))) for i in range(3)]
    await wait_until(lambda: batcher.queued == 3, what="three queued requests")
    assert metrics.queue_depth.labels(MODEL)._value.get() == 3
    runtime.gate.set()
    results = await asyncio.gather(first, *queued)
    # The lone first request ran at once (padded 1→2); the three waiting ones ran together (padded 3→4).
    assert runtime.calls == [2, 4]
    assert batcher.stats.padded == 1 + 1
    for i, out in enumerate(results[1:]):
        np.testing.assert_allclose(out, runtime.inner.predict(images(1, seed=10 + i)), atol=1e-5)
    assert metrics.queue_depth.labels(MODEL)._value.get() == 0
    await batcher.close()


async def test_large_requests_are_split_and_results_stay_in_order(runtime: GatedRuntime) -> None:
    batcher = Batcher(MODEL, runtime.predict, BatchingSettings(max_batch_size=8, allowed_batch_sizes=(4, 8)), SHAPE)
    batch = images(11, seed=3)
    out = await batcher.submit(batch)
    assert sorted(runtime.calls) == [4, 8]
    np.testing.assert_allclose(out, runtime.inner.predict(batch), atol=1e-5)
    await batcher.close()


async def test_full_queue_is_rejected_at_once(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(max_batch_size=2, num_batch_threads=1, max_enqueued_batches=1)
    batcher, running = await start_held_batch(runtime, settings, images(2))
    queued = asyncio.ensure_future(batcher.submit(images(2)))  # fills the one queued batch
    await wait_until(lambda: batcher.queued == 1, what="a queued batch")
    with pytest.raises(ResourceExhausted, match="queue is full"):
        await batcher.submit(images(1))
    assert batcher.stats.rejected == 1
    runtime.gate.set()
    await asyncio.gather(running, queued)
    await batcher.close()


async def test_expired_and_cancelled_requests_are_dropped_before_running(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1)
    batcher, running = await start_held_batch(runtime, settings, images(1))
    expired = asyncio.ensure_future(batcher.submit(images(2), deadline=time.monotonic() - 1.0))
    cancelled = asyncio.ensure_future(batcher.submit(images(3)))
    alive = asyncio.ensure_future(batcher.submit(images(1, seed=5)))
    await wait_until(lambda: batcher.queued == 3, what="three queued requests")
    cancelled.cancel()
    runtime.gate.set()
    with pytest.raises(DeadlineExceeded):
        await expired
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.gather(running, alive)
    assert runtime.calls == [1, 1]  # only the live request ran in the second batch
    assert batcher.stats.expired == 1
    await batcher.close()


async def test_timeout_closes_a_partial_batch_while_more_requests_are_decoded(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=2)
    batcher, first = await start_held_batch(runtime, settings, images(1))
    batcher.announce()  # another request is being decoded…
    second = asyncio.ensure_future(batcher.submit(images(1)))
    # …so the second request waits for it, but only up to the timeout, then starts on the free thread.
    await wait_until(lambda: batcher.running == 2, what="the timeout to start a second batch")
    batcher.withdraw()
    runtime.gate.set()
    await asyncio.gather(first, second)
    assert runtime.calls == [1, 1]
    await batcher.close()


async def test_a_free_thread_takes_queued_work_at_once_when_nothing_else_is_coming(runtime: GatedRuntime) -> None:
    # A long timeout: only the dispatch rule can start the second batch before the gate opens.
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=60_000_000, num_batch_threads=2)
    batcher, first = await start_held_batch(runtime, settings, images(1))
    second = asyncio.ensure_future(batcher.submit(images(2, seed=5)))
    await wait_until(lambda: batcher.running == 2, what="the second thread to start at once")
    assert batcher.queued == 0
    runtime.gate.set()
    await asyncio.gather(first, second)
    assert runtime.calls == [1, 2]
    await batcher.close()


async def test_batching_disabled_runs_each_request_alone_unpadded(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(enabled=False, max_batch_size=8, num_batch_threads=1)
    batcher, running = await start_held_batch(runtime, settings, images(3))
    queued = [asyncio.ensure_future(batcher.submit(images(n))) for n in (1, 2)]
    await wait_until(lambda: batcher.queued == 2, what="two queued requests")
    runtime.gate.set()
    await asyncio.gather(running, *queued)
    assert runtime.calls == [3, 1, 2]
    await batcher.close()


async def test_wrong_shapes_are_invalid(runtime: GatedRuntime) -> None:
    batcher = Batcher(MODEL, runtime.predict, BatchingSettings(), SHAPE)
    with pytest.raises(InvalidArgument, match="shape"):
        await batcher.submit(np.zeros((1, SIZE + 1, SIZE, 3), np.float32))
    with pytest.raises(InvalidArgument, match="no images"):
        await batcher.submit(np.zeros((0, *SHAPE), np.float32))
    await batcher.close()


def test_allowed_batch_sizes_are_validated() -> None:
    assert BatchingSettings(max_batch_size=12).batch_sizes == (1, 2, 3, 4, 6, 8, 12)
    assert BatchingSettings(enabled=False).batch_sizes == (1,)
    with pytest.raises(InvalidArgument, match="must equal max_batch_size"):
        BatchingSettings(max_batch_size=8, allowed_batch_sizes=(2, 4))
    with pytest.raises(InvalidArgument, match="increasing"):
        BatchingSettings(max_batch_size=8, allowed_batch_sizes=(4, 2, 8))


async def test_an_idle_batcher_waits_for_announced_requests(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(
        max_batch_size=8, batch_timeout_micros=60_000_000, allowed_batch_sizes=(1, 2, 4, 8), num_batch_threads=1
    )
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE)
    batcher.announce()
    batcher.announce()  # two requests are being decoded
    first = asyncio.ensure_future(batcher.submit(images(1), announced=True))
    await wait_until(lambda: batcher.queued == 1, what="the first request to queue")
    assert runtime.calls == []  # it waits for the one still on its way…
    second = asyncio.ensure_future(batcher.submit(images(1, seed=4), announced=True))
    await asyncio.gather(first, second)
    assert runtime.calls == [2]  # …and both run together as soon as it arrives

    batcher.announce()
    batcher.announce()
    third = asyncio.ensure_future(batcher.submit(images(1), announced=True))
    await wait_until(lambda: batcher.queued == 1, what="the third request to queue")
    batcher.withdraw()  # the other one failed to decode: nothing left to wait for
    await third
    assert runtime.calls == [2, 1]
    await batcher.close()


async def test_with_another_thread_free_a_request_does_not_wait_for_announced_ones(runtime: GatedRuntime) -> None:
    # Two idle threads: waiting would only delay the first request, since the announced one can run on
    # the other thread when it arrives (at low concurrency this is what batching off does).
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=60_000_000, num_batch_threads=2)
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE)
    runtime.gate.clear()
    batcher.announce()
    batcher.announce()
    first = asyncio.ensure_future(batcher.submit(images(1), announced=True))
    await wait_until(lambda: batcher.running == 1, what="the first request to start at once")
    second = asyncio.ensure_future(batcher.submit(images(1, seed=4), announced=True))
    await wait_until(lambda: batcher.running == 2, what="the second request to start on the other thread")
    runtime.gate.set()
    await asyncio.gather(first, second)
    assert runtime.calls == [1, 1]
    await batcher.close()


def curve(beside_factor: float) -> CostCurve:
    """A cost curve in which two batches at once take ``beside_factor`` × one batch's time."""
    sizes = (1, 2, 3, 4, 6, 8)
    alone = {b: 0.010 + 0.001 * b for b in sizes}
    return CostCurve(sizes, alone, {b: beside_factor * t for b, t in alone.items()})


async def one_batch_running(runtime: GatedRuntime, beside_factor: float) -> tuple[Batcher, asyncio.Future[np.ndarray]]:
    """A batcher on ``curve(beside_factor)`` whose first one-image batch is running, held by the closed gate."""
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=0, allowed_batch_sizes=(1, 2, 3, 4, 6, 8))
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE, cost=curve(beside_factor))
    runtime.gate.clear()
    first = asyncio.ensure_future(batcher.submit(images(1, seed=1)))
    await wait_until(lambda: batcher.running == 1, what="the first batch to start")
    return batcher, first


async def test_cost_curve_holds_small_batches_that_would_merge_into_a_faster_one(runtime: GatedRuntime) -> None:
    # Two at once take twice as long as one (a CPU the model already fills): starting the queue beside the
    # running batch is slower than letting it grow and run as one, so it waits for the running batch's end.
    batcher, first = await one_batch_running(runtime, 2.0)
    queued = [asyncio.ensure_future(batcher.submit(images(1, seed=10 + i))) for i in range(3)]
    await wait_until(lambda: batcher.queued == 3, what="three queued requests")
    assert batcher.running == 1 and batcher.stats.held >= 1  # a thread is free, yet nothing started beside
    runtime.gate.set()
    results = await asyncio.gather(first, *queued)
    assert runtime.calls == [1, 3]
    for i, out in enumerate(results[1:]):
        np.testing.assert_allclose(out, runtime.inner.predict(images(1, seed=10 + i)), atol=1e-5)
    await batcher.close()


async def test_cost_curve_runs_side_by_side_where_that_is_faster(runtime: GatedRuntime) -> None:
    # Two at once cost what one does (a model that leaves cores idle): the queue starts beside at once.
    batcher, first = await one_batch_running(runtime, 1.0)
    second = asyncio.ensure_future(batcher.submit(images(1, seed=2)))
    await wait_until(lambda: batcher.running == 2, what="a second batch beside the first")
    assert batcher.stats.held == 0
    runtime.gate.set()
    await asyncio.gather(first, second)
    assert runtime.calls == [1, 1]
    await batcher.close()


async def test_a_lone_request_is_never_held_by_the_cost_curve(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=60_000_000)
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE, cost=curve(10.0))
    batcher.announce()  # another request on its way does not hold it either: nothing is running
    out = await asyncio.wait_for(batcher.submit(images(1)), timeout=30)
    batcher.withdraw()
    assert out.shape == (1, 3) and runtime.calls == [1] and batcher.stats.held == 0
    await batcher.close()


def test_cost_curve_decisions() -> None:
    slow_beside, free_beside = curve(2.0), curve(1.0)
    assert slow_beside.padded(5) == 6 and slow_beside.padded(100) == 8
    assert not slow_beside.run_beside(2, 8) and free_beside.run_beside(2, 8)
    assert slow_beside.best_size() == 8
    assert not CostCurve((1, 2), {1: 0.01, 2: 0.02}, {}).run_beside(1, 2)  # never measured beside: never


async def test_one_batch_in_sixteen_probes_beside_to_keep_the_curve_current(runtime: GatedRuntime) -> None:
    settings = BatchingSettings(max_batch_size=8, batch_timeout_micros=0, allowed_batch_sizes=(1, 2, 3, 4, 6, 8))
    cost = curve(2.0)
    batcher = Batcher(MODEL, runtime.predict, settings, SHAPE, cost=cost)
    for i in range(15):  # one at a time: nothing to hold
        await batcher.submit(images(1, seed=i))
    runtime.gate.clear()
    first = asyncio.ensure_future(batcher.submit(images(1, seed=20)))
    await wait_until(lambda: batcher.running == 1, what="the 16th batch to start")
    before = cost.beside[1]
    second = asyncio.ensure_future(batcher.submit(images(1, seed=21)))
    await wait_until(lambda: batcher.running == 2, what="a probe beside the 16th batch")
    assert batcher.stats.probes == 1 and batcher.stats.held == 0
    runtime.gate.set()
    await asyncio.gather(first, second)
    assert cost.beside[1] != before  # the overlapping batches' times were folded into the curve
    await batcher.close()
