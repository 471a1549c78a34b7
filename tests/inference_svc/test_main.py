"""The entry point as deployed: ``python -m inference_svc`` serves, and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.inference_svc.support import MODEL, encode, random_image
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_inference_svc_serves_and_drains_on_sigterm(base_path: Path) -> None:
    env = {**os.environ, "TFIC_MODEL_BASE_PATH": str(base_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "inference_svc", "--log-level", "info", "--host", "127.0.0.1", "--port", "0"]
    command += ["--metrics-port", "-1", "--drain-seconds", "0.2", "--shutdown-grace-seconds", "2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:
            found = re.search(r"listening on [\d.]+:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "the server never said where it listens"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for response in health.Watch(health_pb2.HealthCheckRequest(service=MODEL), timeout=120):
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            reply = classifier_pb2_grpc.ClassifierStub(channel).Classify(
                classifier_pb2.ClassifyRequest(
                    model=common_pb2.ModelSpec(name=MODEL), images=[encode(random_image(3))]
                ),
                timeout=30,
            )
            assert reply.model_version == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        rest = process.stderr.read()
        assert "shutdown requested" in rest and "inference service stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("cores", "batches", "expected"), [(2, 2, (1, 1)), (16, 2, (8, 1)), (8, 1, (8, 1)), (1, 4, (1, 1))]
)
def test_tensorflow_threads_share_the_cores_among_concurrent_batches(
    cores: int, batches: int, expected: tuple[int, int]
) -> None:
    from inference_svc.runtime.tensorflow import serving_threads

    assert serving_threads(cores, batches) == expected
