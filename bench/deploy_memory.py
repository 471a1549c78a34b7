"""The inference pod's memory: one model version, two (a hot swap: the new version loads and warms while the
old one serves), each warmed at every allowed batch size, then under load at the largest batch.

Runs the real ``tfic serve inference`` with the manifests' settings (4 guaranteed CPUs: 2 intra-op, 2
decoders, 2 inter-op, 2 batch threads, max batch 32) on the EfficientNet-Lite0 ImageNet classifier
(224 px, real weights) and reads the process's peak resident set (VmHWM) from /proc::

    .venv/bin/python -m bench.deploy_memory --requests 40

Results go to bench/results/deploy_memory.json; docs/deploy.md ("Resources") uses them for the memory
request. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.inference.fixtures import export_bench_model, photo
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

MODEL = "lite0"
RESULTS = Path(__file__).resolve().parent / "results" / "deploy_memory.json"
SETTINGS = {
    "TFIC_INFERENCE_TF_INTRA_OP_THREADS": "2",
    "TFIC_INFERENCE_DECODE_WORKERS": "2",
    "TFIC_INFERENCE_TF_INTER_OP_THREADS": "2",
    "TFIC_INFERENCE_NUM_BATCH_THREADS": "2",
    "TFIC_INFERENCE_MAX_BATCH_SIZE": "32",
    "TFIC_INFERENCE_BATCH_TIMEOUT_MICROS": "1000",
    "TFIC_INFERENCE_METRICS_PORT": "-1",
    "TFIC_INFERENCE_PORT": "0",
    "TFIC_LOG_LEVEL": "warning",
}


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(repo: Path, versions: int, requests: int, images: list[bytes]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        env = {
            **os.environ,
            **SETTINGS,
            "TFIC_MODEL_BASE_PATH": str(repo),
            "TFIC_MODEL_VERSION_POLICY": f"latest:{versions}",
            "TFIC_INFERENCE_PORT_FILE": str(port_file),
        }
        tfic = str(Path(sys.executable).with_name("tfic"))
        proc = subprocess.Popen([tfic, "serve", "inference"], env=env, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            while not port_file.is_file() or not port_file.read_text().strip():
                if proc.poll() is not None or time.monotonic() - started > 600:
                    raise RuntimeError("the inference service did not start")
                time.sleep(0.2)
            target = f"127.0.0.1:{int(port_file.read_text())}"
            with grpc.insecure_channel(target) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for response in health.Watch(health_pb2.HealthCheckRequest(service=MODEL), timeout=600):
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                stub = classifier_pb2_grpc.ClassifierStub(channel)
                listed = stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL), timeout=60)
                loaded = sum(1 for v in listed.versions if v.state == classifier_pb2.VERSION_STATE_AVAILABLE)
                # Loading and warm-up run while the first versions come up; wait for all of them.
                while loaded < versions:
                    time.sleep(0.5)
                    listed = stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL), timeout=60)
                    loaded = sum(1 for v in listed.versions if v.state == classifier_pb2.VERSION_STATE_AVAILABLE)
                after_warmup = status_kib(proc.pid, "VmHWM")
                request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images)
                for _ in range(requests):
                    stub.Classify(request, timeout=120)
            return {
                "versions": versions,
                "peak_rss_mib_after_warmup": round(after_warmup / 1024, 1),
                "peak_rss_mib_under_load": round(status_kib(proc.pid, "VmHWM") / 1024, 1),
                "rss_mib_at_end": round(status_kib(proc.pid, "VmRSS") / 1024, 1),
            }
        finally:
            proc.terminate()
            proc.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="Classify calls of 32 photos each")
    parser.add_argument("--repo", type=Path, help="model repository to create or reuse (default: a temporary one)")
    args = parser.parse_args()
    repo = args.repo or Path(tempfile.mkdtemp(prefix="tfic-memory-"))
    first = export_bench_model(repo, MODEL, "efficientnet_lite0")
    if not (first.parent / "2").exists():
        shutil.copytree(first, first.parent / "2")
    images = [photo(i, 640, 480) for i in range(32)]
    results = [measure(repo, versions, args.requests, images) for versions in (1, 2)]
    record = {
        "command": f"python -m bench.deploy_memory --requests {args.requests}",
        "model": "EfficientNet-Lite0 ImageNet classifier, 224 px (tfic backbones export)",
        "settings": SETTINGS,
        "image": "640x480 JPEG, 32 per request",
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
