"""The entry point as deployed: ``python -m inference_svc`` serves, and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import pytest

from tests.inference_svc.support import MODEL, encode, random_image, run_entry_point, wait_serving
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_python_m_inference_svc_serves_and_drains_on_sigterm(base_path: Path, tmp_path: Path, event_loop: str) -> None:
    port_file = tmp_path / "inference.port"
    flags = ("--drain-seconds", "0.2", "--shutdown-grace-seconds", "2", "--port-file", str(port_file))
    with run_entry_point(base_path, *flags, env={"TFIC_INFERENCE_EVENT_LOOP": event_loop}) as server:
        assert f"event loop {event_loop}" in "".join(server.log)
        listening = f"tfic inference service listening on 127.0.0.1:{server.port} (plaintext, no token; metrics off)"
        assert listening in server.log[-1]
        assert port_file.read_text() == f"{server.port}\n"  # written before the line is printed
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_serving(channel, MODEL)
            reply = classifier_pb2_grpc.ClassifierStub(channel).Classify(
                classifier_pb2.ClassifyRequest(
                    model=common_pb2.ModelSpec(name=MODEL), images=[encode(random_image(3))]
                ),
                timeout=30,
            )
            assert reply.model_version == 1
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert server.process.stderr is not None
        rest = server.process.stderr.read()
        assert "shutdown requested" in rest and "inference service stopped" in rest
        assert not port_file.exists()


def test_cpu_cores_respects_a_container_cpu_limit(tmp_path: Path) -> None:
    from inference_svc.settings import cgroup_cpu_limit, cpu_cores

    machine = len(os.sched_getaffinity(0))
    assert cgroup_cpu_limit(tmp_path) is None and cpu_cores(tmp_path) == machine  # no cgroup files: no limit
    (tmp_path / "cpu.max").write_text("max 100000\n")  # cgroup v2, unlimited
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # limits.cpu: 1500m
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert cpu_cores(tmp_path) == min(machine, 2)
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 0.5 and cpu_cores(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None
