"""A fleet rollout with version labels, measured: N inference processes share one model repository while
closed-loop clients classify against all of them; ``tfic models`` promotes v2 to canary, then to stable, then
rolls back.

Reports, per phase: requests, failures, the share each version answered and latency percentiles; per label move:
how long until every server serves the new state (the poll interval plus, for a version not loaded, its load and
warm-up). Writes ``bench/inference/results/fleet_rollout.json``.

    python -m bench.inference.fleet_rollout [--servers 2] [--clients 4] [--seconds 8] [--poll 1.0] [--share 0.1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.inference.fixtures import export_bench_model, photo
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2
from tfic_cli.main import main as tfic

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "inference" / "results" / "fleet_rollout.json"
MODEL = "fleet"
AVAILABLE = classifier_pb2.VERSION_STATE_AVAILABLE


@contextlib.contextmanager
def server(base: Path, poll: float) -> Iterator[int]:
    env = {**os.environ, "TFIC_MODEL_BASE_PATH": str(base), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "inference_svc", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1"]
    command += ["--poll-interval-seconds", str(poll), "--log-level", "warning", "--decode-workers", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            found = re.search(r"listening on [\d.]+:(\d+)", line)
            if found:
                # Keep draining stderr so a chatty server never blocks on a full pipe.
                threading.Thread(target=process.stderr.read, daemon=True).start()
                yield int(found.group(1))
                return
        raise RuntimeError("the inference service did not start")
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()


class Load:
    """``clients`` closed loops per server; each answer is recorded with its version, latency and phase."""

    def __init__(self, stubs: list[classifier_pb2_grpc.ClassifierStub], clients: int, image: bytes) -> None:
        self.request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[image])
        self.lock = threading.Lock()
        self.phase = "start"
        self.records: list[tuple[str, int, float]] = []  # phase, version (0: failed), seconds
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(s,), daemon=True) for s in stubs for _ in range(clients)
        ]

    def run(self, stub: classifier_pb2_grpc.ClassifierStub) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                version = stub.Classify(self.request, timeout=30).model_version
            except grpc.RpcError as exc:
                version = 0
                with self.lock:
                    self.errors.append(f"{exc.code().name}: {exc.details()}")
            with self.lock:
                self.records.append((self.phase, int(version), time.perf_counter() - start))

    def summary(self, phase: str) -> dict[str, Any]:
        with self.lock:
            rows = [r for r in self.records if r[0] == phase]
        versions = [v for _, v, _ in rows]
        seconds = np.array([s for _, _, s in rows]) * 1000
        return {
            "requests": len(rows),
            "failed": versions.count(0),
            "share": {str(v): round(versions.count(v) / len(rows), 4) for v in sorted(set(versions)) if v},
            "p50_ms": round(float(np.percentile(seconds, 50)), 2) if rows else None,
            "p99_ms": round(float(np.percentile(seconds, 99)), 2) if rows else None,
        }


def state(stub: classifier_pb2_grpc.ClassifierStub) -> dict[int, tuple[str, ...]]:
    """Version → labels when every version the server lists is AVAILABLE (none loading or unloading), else {}."""
    info = stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL), timeout=10)
    if any(v.state != AVAILABLE for v in info.versions):
        return {}
    return {v.version: tuple(v.version_labels) for v in info.versions}


def fleet_is(
    stubs: list[classifier_pb2_grpc.ClassifierStub], expected: dict[int, tuple[str, ...]]
) -> Callable[[], bool]:
    return lambda: all(state(s) == expected for s in stubs)


def wait(condition: Callable[[], bool], timeout: float = 300) -> float:
    start = time.perf_counter()
    pause = threading.Event()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the fleet did not follow the label move")
        pause.wait(0.01)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--clients", type=int, default=4, help="closed loops per server")
    p.add_argument("--seconds", type=float, default=8.0, help="steady time per phase")
    p.add_argument("--poll", type=float, default=1.0, help="the servers' --poll-interval-seconds")
    p.add_argument("--share", type=float, default=0.1, help="the canary share")
    p.add_argument("--size", type=int, default=64, help="the bench model's input size")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="tfic-fleet-"))
    try:
        base = work / "models"
        store = work / "store"
        v1 = export_bench_model(store, MODEL, args.size, seed=1)
        shutil.copytree(v1, base / MODEL / "1")
        shutil.copytree(v1, base / MODEL / "2")  # same weights: answers are told apart by model_version
        model_dir = base / MODEL
        tfic(["models", "promote", str(model_dir), "1"])
        with contextlib.ExitStack() as stack:
            ports = [stack.enter_context(server(base, args.poll)) for _ in range(args.servers)]
            channels = [stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}")) for port in ports]
            stubs = [classifier_pb2_grpc.ClassifierStub(c) for c in channels]
            wait(lambda: all(state(s) == {1: ("stable",)} for s in stubs))
            load = Load(stubs, args.clients, photo(1, 320, 240))
            for thread in load.threads:
                thread.start()
            moves: dict[str, dict[str, float]] = {}
            steps: list[tuple[str, list[str], dict[int, tuple[str, ...]]]] = [
                (
                    "canary",
                    ["promote", str(model_dir), "2", "--label", "canary", "--canary-share", str(args.share)],
                    {1: ("stable",), 2: ("canary",)},
                ),
                ("stable", ["promote", str(model_dir), "2"], {2: ("stable",)}),
                ("rollback", ["rollback", str(model_dir)], {1: ("stable",)}),
            ]
            pause = threading.Event()
            load.phase = "v1"
            pause.wait(args.seconds)
            for name, command, expected in steps:
                load.phase = f"{name} (moving)"
                start = time.perf_counter()
                tfic(["models", *command])  # validation (promote) and the atomic write
                written = time.perf_counter() - start
                followed = wait(fleet_is(stubs, expected))
                moves[name] = {"tfic_seconds": round(written, 2), "fleet_follows_seconds": round(followed, 2)}
                load.phase = name
                pause.wait(args.seconds)
            load.stop.set()
            for thread in load.threads:
                thread.join(60)
        phases = ["v1"] + [p for name, _, _ in steps for p in (f"{name} (moving)", name)]
        report = {
            "command": "python -m bench.inference.fleet_rollout " + " ".join(argv or sys.argv[1:]),
            "settings": vars(args),
            "cpus": os.cpu_count(),
            "phases": {phase: load.summary(phase) for phase in phases},
            "label_moves": moves,
            "failed_total": len(load.errors),
            "first_errors": load.errors[:5],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if not report["failed_total"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
