"""Refusals under overload: how long an over-limit call waits for its RESOURCE_EXHAUSTED while the server is
saturated, with admission control (``--max-concurrent-requests``) and with the checks that came before it.

Servers (``python -m inference_svc``, the benchmark's small CNN at 32×32, so the server's own per-request work
dominates, the hardest case for a refusal that has to get through the event loop), all up at once, loaded one at
a time, variant by variant in interleaved rounds:

* ``admission``: this tree, ``--max-concurrent-requests LIMIT``: refused before the request is read, with the
  data plane's threads at a lower priority than the event loop (``--data-plane-niceness``, default 10);
* ``admission_idle``: the same with ``--data-plane-policy idle``: the data plane also under ``SCHED_IDLE``;
* ``admission_one_priority``: the same with ``--data-plane-niceness 0``: every thread at one priority;
* ``decode_queue``: ``--max-concurrent-requests 0 --max-decode-queue LIMIT``, the earliest check before
  admission control: the request is read, parsed and routed first;
* ``batch_queue``: ``--max-concurrent-requests 0 --max-enqueued-batches 1``: refused by the full batch queue,
  after the request has been decoded (what overload looked like in issue 15).

``--image-size 32x32`` (nothing to decode), ``--model-size efficientnet_lite0`` (inference fills the cores, the
event loop is lightly loaded) and ``--limit 1 --concurrency 1`` (one call at a time) separate what sets a
refusal's latency; ``--only`` picks variants.

With ``--baseline TREE`` (a checkout of an older commit, e.g. main before admission control) the two old
variants run from that tree instead, so before and after are measured side by side in one run.

The load is ``--concurrency`` closed-loop clients (one call outstanding each) on one 640×480 JPEG per call. A
refused client waits as the server's ``RetryInfo`` says (1 s, ×1–1.5 jitter) before its next call, as a
well-behaved client does, so the server stays saturated by admitted work while the refusals are timed;
``--backoff SECONDS`` replaces that delay (0: retry at once, a flood of refusals — then refusal latency is
set by how many refusals per second the server can send, see docs/inference.md).

Beside the load, a *probe* client in its own process sends one call at a time (``--probe-pause`` apart, no
back-off): the load generator's 200 coroutines on one event loop add their own wait to every answer they time,
while the probe's figure is the server's refusal latency as a client that is not itself saturated sees it. Both
are reported, and the goal is checked on both. Writes JSON::

    python -m bench.inference.admission                                   # ~4.5 minutes on 2 cores
    git archive main | tar -x -C /tmp/tfic-main && cp -r tfic/v1 /tmp/tfic-main/tfic/   # main's tree
    python -m bench.inference.admission --baseline /tmp/tfic-main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import uvloop
from grpc import aio

from bench.inference.fixtures import export_bench_model, write_images
from bench.inference.loadgen import build_requests
from bench.inference.run import ROOT, inference_server, json_lines
from tfic.grpc_errors import RichStatus
from tfic.v1 import classifier_pb2_grpc

MODEL = "bench32"
GOAL_P99_MS = 5.0


# ----------------------------------------------------------------------------- the client (its own process)
async def closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    paths = sorted(Path(args.images).glob("*.jpg"))
    requests = build_requests([p.read_bytes() for p in paths], args.model, 1)
    latencies: dict[str, list[float]] = defaultdict(list)
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop_at = measure_from + args.seconds

    async with aio.insecure_channel(args.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)

        async def worker(offset: int) -> None:
            i = offset
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                delay = 0.0
                try:
                    await stub.Classify(requests[i % len(requests)], timeout=60)
                    outcome = "OK"
                except grpc.RpcError as exc:
                    code = exc.code()
                    outcome = code.name if code is not None else "UNKNOWN"
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        hint = RichStatus(exc).retry_after_seconds
                        base = args.backoff if args.backoff is not None else (hint if hint is not None else 1.0)
                        delay = base * random.uniform(1.0, 1.5)
                done = time.perf_counter()
                if sent >= measure_from and done <= stop_at:
                    latencies[outcome].append(done - sent)
                i += args.concurrency
                delay = max(delay, args.pause)
                if delay:
                    await asyncio.sleep(delay)  # the client's back-off, as the server asked

        await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
    return {
        "concurrency": args.concurrency,
        "backoff": "retry_info" if args.backoff is None else args.backoff,
        "seconds": args.seconds,
        "outcomes": {code: summary(values, args.seconds) for code, values in sorted(latencies.items())},
    }


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1e3
    p50, p90, p99 = (float(np.percentile(ms, p)) for p in (50, 90, 99))
    return {"count": len(ms), "per_second": len(ms) / seconds, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "max_ms": float(ms.max())}  # fmt: skip


# ----------------------------------------------------------------------------- the orchestration
def variants(limit: int, baseline: Path | None) -> list[tuple[str, Path, list[str]]]:
    old = baseline if baseline is not None else ROOT
    # An older tree has neither flag; from this one the old checks run as they did, at one priority.
    off = [] if baseline is not None else ["--max-concurrent-requests", "0", "--data-plane-niceness", "0"]
    admit = ["--max-concurrent-requests", str(limit)]
    return [
        ("admission", ROOT, admit),
        ("admission_single_accept", ROOT, [*admit, "--accept-depth", "0"]),
        ("admission_processes", ROOT, [*admit, "--decode-pool", "processes"]),
        ("admission_processes_idle", ROOT, [*admit, "--decode-pool", "processes", "--data-plane-policy", "idle"]),
        ("admission_idle", ROOT, [*admit, "--data-plane-policy", "idle"]),
        ("admission_one_priority", ROOT, ["--max-concurrent-requests", str(limit), "--data-plane-niceness", "0"]),
        ("decode_queue", old, [*off, "--max-decode-queue", str(limit)]),
        ("batch_queue", old, [*off, "--max-enqueued-batches", "1"]),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = variants(args.limit, args.baseline)
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - {name for name, _, _ in chosen}
        if unknown:
            raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {[n for n, _, _ in chosen]}")
        chosen = [v for v in chosen if v[0] in names]
    # The model and image size are part of the directory names, so runs with other ones never mix files.
    size = int(args.model_size) if args.model_size.isdigit() else args.model_size
    base = args.work / f"models-admission-{args.model_size}"
    export_bench_model(base, MODEL, size)
    width, height = (int(n) for n in args.image_size.split("x"))
    images = args.work / f"images-{args.image_size}"
    write_images(images, 64, width, height)
    backoffs: list[float | None] = [None if b == "retry_info" else float(b) for b in args.backoffs.split(",")]
    rounds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with ExitStack() as stack:
        targets = {}
        for name, root, flags in chosen:
            print(f"== starting {name}: {' '.join(flags)} (from {root})", flush=True)
            targets[name] = stack.enter_context(inference_server(base, MODEL, ["--decode-workers", "2", *flags], root))
        for round_ in range(args.rounds):
            order = chosen[round_ % len(chosen) :] + chosen[: round_ % len(chosen)]
            for backoff in backoffs:
                for name, _, flags in order:
                    target, _metrics = targets[name]
                    command = client(target, images, args.concurrency, args.seconds)
                    if backoff is not None:
                        command += ["--backoff", str(backoff)]
                    probe = client(target, images, 1, args.seconds)
                    probe += ["--backoff", "0", "--pause", str(args.probe_pause)]
                    with ThreadPoolExecutor(1) as pool:
                        probed = pool.submit(json_lines, probe, 600)
                        (result,) = json_lines(command, timeout=600)
                        (result["probe"],) = probed.result()
                    result |= {"variant": name, "flags": flags, "round": round_ + 1}
                    rounds[name].append(result)
                    print(json.dumps(brief(result)), flush=True)
    return {"model": MODEL, "model_size": args.model_size, "image_size": args.image_size, "limit": args.limit,
            "baseline": str(args.baseline) if args.baseline else None, "concurrency": args.concurrency,
            "runs": rounds, "goal": goal(rounds.get("admission", []))}  # fmt: skip


def client(target: str, images: Path, concurrency: int, seconds: float) -> list[str]:
    """The ``client`` subcommand's arguments (the load generator, or the probe with concurrency 1)."""
    return ["-m", "bench.inference.admission", "client", "--target", target, "--images", str(images),
            "--concurrency", str(concurrency), "--seconds", str(seconds)]  # fmt: skip


def brief(result: dict[str, Any]) -> dict[str, Any]:
    refused = result["outcomes"].get("RESOURCE_EXHAUSTED", {})
    ok = result["outcomes"].get("OK", {})
    probed = result["probe"]["outcomes"].get("RESOURCE_EXHAUSTED", {})
    return {
        "variant": result["variant"],
        "backoff": result["backoff"],
        "round": result["round"],
        "refused_per_s": round(refused.get("per_second", 0.0), 1),
        "refused_p50_ms": round(refused.get("p50_ms", float("nan")), 2),
        "refused_p99_ms": round(refused.get("p99_ms", float("nan")), 2),
        "ok_per_s": round(ok.get("per_second", 0.0), 1),
        "ok_p50_ms": round(ok.get("p50_ms", float("nan")), 1),
        "probe_refused_p50_ms": round(probed.get("p50_ms", float("nan")), 2),
        "probe_refused_p99_ms": round(probed.get("p99_ms", float("nan")), 2),
        "other": {k: v["count"] for k, v in result["outcomes"].items() if k not in ("OK", "RESOURCE_EXHAUSTED")},
    }


def goal(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goal: refusals in < 5 ms p99 while saturated, for clients that honour RetryInfo."""
    p99 = [
        r["outcomes"]["RESOURCE_EXHAUSTED"]["p99_ms"]
        for r in runs
        if r["backoff"] == "retry_info" and "RESOURCE_EXHAUSTED" in r["outcomes"]
    ]
    probe = [
        r["probe"]["outcomes"]["RESOURCE_EXHAUSTED"]["p99_ms"]
        for r in runs
        if r["backoff"] == "retry_info" and "RESOURCE_EXHAUSTED" in r["probe"]["outcomes"]
    ]
    worst = max(p99) if p99 else float("nan")
    worst_probe = max(probe) if probe else float("nan")
    return {
        "refused_p99_ms_worst_round": worst,
        "probe_refused_p99_ms_worst_round": worst_probe,
        "goal_ms": GOAL_P99_MS,
        "met": bool(p99) and worst < GOAL_P99_MS,
        "met_by_probe": bool(probe) and worst_probe < GOAL_P99_MS,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client", help="one closed-loop run against one server (JSON on stdout)")
    client.add_argument("--target", required=True)
    client.add_argument("--model", default=MODEL)
    client.add_argument("--images", required=True)
    client.add_argument("--concurrency", type=int, default=200)
    client.add_argument("--seconds", type=float, default=10.0)
    client.add_argument("--warmup", type=float, default=2.0)
    client.add_argument("--backoff", type=float, help="seconds a refused client waits (default: its RetryInfo)")
    client.add_argument("--pause", type=float, default=0.0, help="seconds between one client's calls (the probe)")
    parser.add_argument("--limit", type=int, default=32, help="the admission limit (and the decode-queue bound)")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--backoffs", default="retry_info,0", help="comma-separated: retry_info (honour RetryInfo) or seconds"
    )
    parser.add_argument(
        "--probe-pause", type=float, default=0.02, help="seconds between the probe client's calls (one at a time)"
    )
    parser.add_argument(
        "--model-size",
        default="32",
        help="the served model: the small CNN at this many pixels, or a backbone "
        "(efficientnet_lite0: real ImageNet weights at 224 px, where inference, not the event loop, fills the cores)",
    )
    parser.add_argument(
        "--image-size", default="640x480", help="WIDTHxHEIGHT of the JPEGs sent (32x32: no decode work)"
    )
    parser.add_argument("--only", help="comma-separated variants to run (default: all)")
    parser.add_argument("--baseline", type=Path, help="a source tree to run the old variants from (e.g. main)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tfic-bench-inference"))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "inference" / "results" / "admission.json")
    args = parser.parse_args(argv)
    if args.command == "client":
        print(json.dumps(uvloop.run(closed_loop(args))), flush=True)
        return 0
    started = time.time()
    load_before = os.getloadavg()
    results = run(args)
    results["minutes"] = round((time.time() - started) / 60, 1)
    # Other processes on a shared machine move these figures: the load says how much.
    results["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    results["command"] = "python -m bench.inference.admission " + " ".join(argv or sys.argv[1:])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["goal"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
