"""The data plane (decode, batch, TensorFlow threads) runs at a lower CPU priority than the event loop.

What that buys under saturation (refusals and probes answered first) is measured in
bench/inference/admission.py; these tests check which threads a real ``python -m inference_svc`` lowers, read
from ``/proc``, and that 0 lowers none. Only the entry point sets priorities (they are the whole process's), so
a server embedded in the test process would leave its threads alone, and so it must: the tests' own training
shares TensorFlow's threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from inference_svc.priority import thread_is_idle
from tests.inference_svc.support import MODEL, encode, random_image, run_entry_point, wait_serving
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="per-thread priorities are Linux's")


def threads(pid: int) -> list[tuple[int, str, int, bool]]:
    """(thread id, name, nice value, whether under SCHED_IDLE) of every thread of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            tid = int(task.name)
            found.append((tid, name, os.getpriority(os.PRIO_PROCESS, tid), thread_is_idle(tid)))
        except OSError:  # exited meanwhile
            continue
    return found


def serve_and_classify(base_path: Path, *flags: str) -> tuple[int, list[tuple[int, str, int, bool]]]:
    with run_entry_point(base_path, "--decode-workers", "2", *flags) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_serving(channel, MODEL)
            request = classifier_pb2.ClassifyRequest(
                model=common_pb2.ModelSpec(name=MODEL), images=[encode(random_image(3))]
            )
            assert len(classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=60).results) == 1
            pid, found = server.process.pid, threads(server.process.pid)
        server.process.terminate()
        server.process.wait(timeout=60)
    return pid, found


def test_decode_batch_and_tensorflow_threads_run_below_the_event_loop(base_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())  # the server inherits this process's
    lowered = min(19, base + 7)
    pid, found = serve_and_classify(base_path, "--data-plane-niceness", "7")
    nice_of = {tid: nice for tid, _, nice, _ in found}
    tensorflow = [nice for _, name, nice, _ in found if name.startswith("tf_")]
    assert tensorflow and set(tensorflow) == {lowered}
    # Two decode workers and two batch threads (the tests' default), at least, are Python threads lowered.
    assert sum(1 for _, name, nice, _ in found if name == "python" and nice == lowered) >= 4
    assert nice_of[pid] == base  # the main thread: the event loop
    assert {nice for _, name, nice, _ in found if name.startswith(("grpc", "event_engine"))} == {base}


def test_niceness_zero_leaves_every_thread_at_the_process_priority(base_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    _, found = serve_and_classify(base_path, "--data-plane-niceness", "0")
    assert {nice for _, _, nice, _ in found} == {base}


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_idle_policy_puts_the_data_plane_under_sched_idle_and_leaves_the_loop_and_grpc_alone(
    base_path: Path,
) -> None:
    pid, found = serve_and_classify(base_path, "--data-plane-policy", "idle", "--data-plane-niceness", "0")
    idle = {tid for tid, _, _, is_idle in found if is_idle}
    tensorflow = {tid for tid, name, _, _ in found if name.startswith("tf_")}
    assert tensorflow and tensorflow <= idle
    assert sum(1 for tid, name, _, _ in found if name == "python" and tid in idle) >= 4  # decode and batch workers
    assert pid not in idle  # the event loop
    assert not {tid for tid, name, _, _ in found if name.startswith(("grpc", "event_engine"))} & idle


def test_the_default_policy_puts_no_thread_under_sched_idle(base_path: Path) -> None:
    _, found = serve_and_classify(base_path)
    assert not [name for _, name, _, is_idle in found if is_idle]
