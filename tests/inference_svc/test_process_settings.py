"""What the entry point resolves for the whole process: TensorFlow's intra-op pool, one share of the cores per
batch thread unless the flag says otherwise. An embedded server leaves its host's TensorFlow alone (the tests'
own training shares it), so the resolution is checked on a real ``python -m inference_svc``."""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from inference_svc.server import process_settings
from inference_svc.settings import cpu_cores, intra_op_threads_per_batch
from tests.inference_svc.support import (
    MODEL,
    EntryPoint,
    make_settings,
    run_entry_point,
    wait_serving,
    with_batching,
)


def test_the_cores_are_split_among_the_batches_that_may_run_at_once() -> None:
    assert intra_op_threads_per_batch(2, 2) == 1
    assert intra_op_threads_per_batch(16, 2) == 8
    assert intra_op_threads_per_batch(7, 2) == 3
    assert intra_op_threads_per_batch(2, 4) == 1  # never none
    assert intra_op_threads_per_batch(4, 1) == 4


def test_an_explicit_pool_size_and_a_remote_runtime_are_left_as_they_are(tmp_path: Path) -> None:
    explicit = make_settings(tmp_path, tf_intra_op_threads=3)
    assert process_settings(explicit).tf_intra_op_threads == 3
    remote = make_settings(tmp_path, runtime="tfserving", tfserving_target="127.0.0.1:1")
    assert process_settings(remote).tf_intra_op_threads == 0
    one_thread = with_batching(make_settings(tmp_path), num_batch_threads=1)
    assert process_settings(one_thread).tf_intra_op_threads == cpu_cores()


def _found(pattern: str, lines: list[str]) -> int | None:
    values = [int(m.group(1)) for m in (re.search(pattern, line) for line in lines) if m]
    return values[-1] if values else None


def _applied(server: EntryPoint, channel: grpc.Channel) -> int | None:
    """The intra-op pool size TensorFlow itself reports once the first version has loaded."""
    wait_serving(channel, MODEL)
    pattern = r"thread pools: intra-op (\d+)"
    if _found(pattern, server.log) is None:  # logged when the first version loads: read on until it is
        for line in server.process.stderr or ():
            server.log.append(line)
            if re.search(pattern, line):
                break
    return _found(pattern, server.log)


def test_the_entry_point_sizes_the_pool_and_a_flag_overrides_it(base_path: Path) -> None:
    with run_entry_point(base_path, "--num-batch-threads", "2") as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            expected = intra_op_threads_per_batch(cpu_cores(), 2)
            assert _found(r"TensorFlow intra-op threads: (\d+)", server.log) == expected
            assert _applied(server, channel) == expected
        assert not any("thread settings not applied" in line for line in server.log)
    with (
        run_entry_point(base_path, "--tf-intra-op-threads", "2") as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        assert _found(r"TensorFlow intra-op threads: (\d+)", server.log) is None  # the flag is used as given
        assert _applied(server, channel) == 2
