"""The data plane (decode, batch, TensorFlow threads) runs at a lower CPU priority than the event loop.

What that buys under saturation (refusals and probes answered first) is measured in
bench/inference/admission.py; these tests check which threads a real server lowers, and that 0 lowers none.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from grpc import aio

from inference_svc import priority
from inference_svc.server import InferenceServer
from tests.inference_svc.support import MODEL, encode, make_settings, random_image, wait_until
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="per-thread priorities are Linux's")


def runtime_threads() -> dict[int, str]:
    tasks = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            tasks[int(task.name)] = (task / "comm").read_text().strip()
        except OSError:
            continue
    return {tid: name for tid, name in tasks.items() if name.startswith(priority.RUNTIME_THREAD_PREFIXES)}


async def classify_once(server: InferenceServer) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        request = classifier_pb2.ClassifyRequest(
            model=common_pb2.ModelSpec(name=MODEL), images=[encode(random_image(3))]
        )
        response = await classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30)
    assert len(response.results) == 1


async def test_decode_and_tensorflow_threads_run_below_the_event_loop(base_path: Path) -> None:
    # Above the default (10): TensorFlow's threads are the process's, and earlier servers lowered them to 10.
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    server = await InferenceServer(make_settings(base_path, data_plane_niceness=12)).start()
    try:
        await wait_until(lambda: server.repository.available(MODEL), what="tiny/1 to load")
        await classify_once(server)  # every decode worker has started its loop by now or does at once
        await wait_until(
            lambda: all(priority.thread_niceness(t) == min(19, base + 12) for t in server.preprocessor.thread_ids),
            timeout=10,
            what="the decode workers to lower themselves",
        )
        tensorflow = runtime_threads()
        assert tensorflow, "TensorFlow started no named threads"
        assert {priority.thread_niceness(t) for t in tensorflow} == {min(19, base + 12)}
        # The event loop's thread (this one), and any thread the server does not own, keep the process's priority.
        assert priority.thread_niceness(threading.get_native_id()) == base
        assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == base
    finally:
        await server.stop(grace=1.0)


async def test_niceness_zero_leaves_the_decode_workers_at_the_process_priority(base_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    server = await InferenceServer(make_settings(base_path, data_plane_niceness=0)).start()
    try:
        await wait_until(lambda: server.repository.available(MODEL), what="tiny/1 to load")
        await classify_once(server)
        assert [priority.thread_niceness(t) for t in server.preprocessor.thread_ids] == [base, base]
    finally:
        await server.stop(grace=1.0)
