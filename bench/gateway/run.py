"""The gateway's cost, measured in one run: HTTP through the gateway vs direct gRPC Classify, same load.

Starts the inference service (``python -m inference_svc``), the gateway (``python -m gateway``) and
the bare front (:mod:`bench.gateway.bare_front`, the cheapest possible Python HTTP → gRPC front on the
same uvicorn) as their own processes, serving a small exported CNN, then for each concurrency runs the
same closed-loop load several times per path, alternating (gRPC, gateway, bare, bare, gateway, gRPC, …)
so drift hits all alike: direct ``tfic.v1.Classifier/Classify`` on the inference service, and
``POST /invocations`` (one JPEG, ``Accept: application/json``) on the gateway and on the bare front.
Reports throughput and p50/p99 per path and the gateway's overhead against the goals (≤ 10 % less
throughput, ≤ 2 ms added p50); the bare front shows how much of that overhead any Python front pays.
Writes JSON::

    python -m bench.gateway.run                                   # ~2 minutes on 2 cores
    python -m bench.gateway.run --concurrency 1,16 --rounds 2     # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.gateway.loadgen import HttpConnection, Result, grpc_senders, run_closed_loop

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MODEL = "bench"
GOAL_THROUGHPUT_RATIO = 0.90
GOAL_ADDED_P50_MS = 2.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@contextmanager
def _process(command: list[str], pattern: str) -> Iterator[tuple[subprocess.Popen[str], re.Match[str]]]:
    """Start ``command``; yield once a stderr line matches ``pattern`` (the rest of stderr is drained)."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        assert process.stderr is not None
        found = None
        for line in process.stderr:
            found = re.search(pattern, line)
            if found:
                break
        if found is None:
            raise RuntimeError(f"{command[2]} exited with {process.wait()} before it listened")
        stream = process.stderr
        threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
        yield process, found
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_serving(target: str, service: str, timeout: float = 300) -> None:
    """Health Check until SERVING (NOT_FOUND until the model is known; nothing here is timed, so poll)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        while True:
            try:
                status = stub.Check(request, timeout=timeout, wait_for_ready=True).status
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} not SERVING after {timeout} s")
            time.sleep(0.1)


@contextmanager
def servers(
    base: Path, inference_flags: list[str], gateway_flags: Sequence[str] = ()
) -> Iterator[tuple[str, int, int, dict[str, int]]]:
    """The inference service, the gateway and the bare front; yields (gRPC target, gateway port, bare port, pids)."""
    inference = [PYTHON, "-m", "inference_svc", "--log-level", "info", "--model-base-path", str(base)]
    inference += ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1", "--drain-seconds", "0"]
    with _process([*inference, *inference_flags], r"listening on [\d.]+:(\d+)") as (inference_process, found):
        target = f"127.0.0.1:{found.group(1)}"
        _wait_serving(target, MODEL)
        gateway = [PYTHON, "-m", "gateway", "--log-level", "warning", "--host", "127.0.0.1", "--port", "0"]
        gateway += ["--inference", target, "--default-model", MODEL, *gateway_flags]
        bare = [PYTHON, "-m", "uvicorn", "bench.gateway.bare_front:app", "--host", "127.0.0.1", "--port", "0"]
        bare += ["--no-access-log", "--log-level", "info"]
        os.environ.update(BARE_FRONT_TARGET=target, BARE_FRONT_MODEL=MODEL)
        with (
            _process(gateway, r"listening on http://[\d.]+:(\d+)") as (gateway_process, gw),
            _process(bare, r"running on http://[\d.]+:(\d+)") as (bare_process, bf),
        ):
            pids = {"inference": inference_process.pid, "gateway": gateway_process.pid, "bare": bare_process.pid}
            yield target, int(gw.group(1)), int(bf.group(1)), pids


def _export(base: Path, size: int) -> None:
    """Export the model in a child process, so TensorFlow never loads into the load generator."""
    code = (
        "import sys; from pathlib import Path; from bench.inference.fixtures import export_bench_model; "
        f"export_bench_model(Path(sys.argv[1]), {MODEL!r}, {size})"
    )
    subprocess.run([PYTHON, "-c", code, str(base)], check=True, env=_env(), cwd=ROOT)


PATHS = ("grpc", "gateway", "bare")
PROCESSES = ("inference", "gateway", "bare", "client")


def _cpu_probe(pids: dict[str, int]) -> Callable[[], tuple[float, ...]]:
    """CPU seconds (user + system) of each server process and of this load generator, in PROCESSES order."""
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> tuple[float, ...]:
        values = []
        for name in PROCESSES[:-1]:
            fields = Path(f"/proc/{pids[name]}/stat").read_text().rsplit(")", 1)[1].split()
            values.append((int(fields[11]) + int(fields[12])) / tick)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return (*values, usage.ru_utime + usage.ru_stime)

    return read


async def _measure(
    target: str,
    ports: dict[str, int],
    image: bytes,
    concurrency: list[int],
    seconds: float,
    warmup: float,
    rounds: int,
    pids: dict[str, int],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    probe = _cpu_probe(pids)
    async with aio.insecure_channel(target) as channel:
        headers = {"Content-Type": "image/jpeg", "Accept": "application/json"}
        for c in concurrency:
            runs: dict[str, list[Result]] = {path: [] for path in PATHS}
            # ABC CBA …: drift over the run hits every path alike.
            order = [p for i in range(rounds) for p in (PATHS if i % 2 == 0 else PATHS[::-1])]
            for path in order:
                if path == "grpc":
                    senders = grpc_senders(channel, MODEL, image, c)
                    runs[path].append(await run_closed_loop(path, senders, seconds, warmup, probe))
                    continue
                # Fresh keep-alive connections per run (uvicorn closes idle ones after 5 s), opened in the warm-up.
                conns = [HttpConnection("127.0.0.1", ports[path], "/invocations", image, headers) for _ in range(c)]
                runs[path].append(await run_closed_loop(path, [x.send for x in conns], seconds, warmup, probe))
                for conn in conns:
                    await conn.close()
            row: dict[str, Any] = {"concurrency": c}
            for path, results in runs.items():
                merged = Result(
                    path,
                    c,
                    sum(r.requests for r in results),
                    sum(r.errors for r in results),
                    sum(r.seconds for r in results),
                    [x for r in results for x in r.latencies_ms],
                )
                row[path] = {
                    "throughput": round(merged.throughput, 1),
                    "p50_ms": round(merged.p50, 3),
                    "p99_ms": round(merged.percentile(99), 3),
                    "requests": merged.requests,
                    "errors": merged.errors,
                    # CPU milliseconds per request by process over the counted windows of all runs.
                    "cpu_ms_per_request": {
                        name: round(1e3 * sum(r.cpu_seconds[i] for r in results) / max(1, merged.requests), 3)
                        for i, name in enumerate(PROCESSES)
                    },
                }
            row["throughput_ratio"] = round(row["gateway"]["throughput"] / row["grpc"]["throughput"], 3)
            row["added_p50_ms"] = round(row["gateway"]["p50_ms"] - row["grpc"]["p50_ms"], 3)
            row["bare_throughput_ratio"] = round(row["bare"]["throughput"] / row["grpc"]["throughput"], 3)
            row["bare_added_p50_ms"] = round(row["bare"]["p50_ms"] - row["grpc"]["p50_ms"], 3)
            row["meets_goals"] = (
                row["throughput_ratio"] >= GOAL_THROUGHPUT_RATIO and row["added_p50_ms"] <= GOAL_ADDED_P50_MS
            )
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def _http_stack() -> str:
    """What uvicorn picks in the gateway process (the same environment): httptools/uvloop or h11/asyncio."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http}+{loop}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| concurrency | gRPC req/s | gateway req/s | ratio | gRPC p50 ms | gateway p50 ms | added p50 ms "
        "| bare front req/s | bare ratio | bare added p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        g, h, b = r["grpc"], r["gateway"], r["bare"]
        lines.append(
            f"| {r['concurrency']} | {g['throughput']:.0f} | {h['throughput']:.0f} | {r['throughput_ratio']:.2f} "
            f"| {g['p50_ms']:.2f} | {h['p50_ms']:.2f} | {r['added_p50_ms']:+.2f} "
            f"| {b['throughput']:.0f} | {r['bare_throughput_ratio']:.2f} | {r['bare_added_p50_ms']:+.2f} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[dict[str, Any]]) -> str:
    """CPU milliseconds per request, by path and process (the client is this load generator)."""
    lines = [
        "| concurrency | path | inference ms | gateway ms | bare front ms | client ms | total ms |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for path in PATHS:
            cpu = r[path]["cpu_ms_per_request"]
            cells = " | ".join(f"{cpu[name]:.2f}" for name in PROCESSES)
            lines.append(f"| {r['concurrency']} | {path} | {cells} | {sum(cpu.values()):.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated closed-loop concurrencies")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=4, help="runs per path and level, alternating ABC CBA")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--size", type=int, default=32, help="the model's input size (small_cnn, 10 classes)")
    parser.add_argument("--image", default="64x48", help="WIDTHxHEIGHT of the JPEG sent")
    parser.add_argument("--inference-flags", default="", help="extra flags for python -m inference_svc")
    parser.add_argument(
        "--gateway-flags", default="", help="extra flags for python -m gateway (e.g. '--coalesce-max-images 1')"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "gateway" / "results" / "gateway.json")
    args = parser.parse_args(argv)
    from bench.inference.fixtures import photo

    width, height = (int(v) for v in args.image.split("x"))
    image = photo(1, width, height)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="tfic-gw-bench-") as tmp:
        base = Path(tmp)
        _export(base, args.size)
        with servers(base, args.inference_flags.split(), args.gateway_flags.split()) as (target, port, bare_port, pids):
            load_before = os.getloadavg()[0]
            ports = {"gateway": port, "bare": bare_port}
            rows = asyncio.run(
                _measure(target, ports, image, concurrency, args.seconds, args.warmup, args.rounds, pids)
            )
            load_after = os.getloadavg()[0]
    result = {
        "command": "python -m bench.gateway.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)),
        "model": f"small_cnn {args.size}x{args.size}, 10 classes",
        "image_bytes": len(image),
        "seconds_per_run": args.seconds,
        "runs_per_path": args.rounds,
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "http_stack": _http_stack(),
        "goals": {"throughput_ratio": GOAL_THROUGHPUT_RATIO, "added_p50_ms": GOAL_ADDED_P50_MS},
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print()
    print(cpu_table(rows))
    print(f"\n{result['http_stack']}, load average {result['load_average_1min']}")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
