"""Where a refused call's time goes under saturation: before the admission check, or after it.

The admission benchmark (``bench.inference.admission``) times a refusal at the client. This one splits it. The
server runs with instrumentation (``serve``, below: ``python -m inference_svc``'s own ``main`` with two patches,
nothing else changed): the admission interceptor writes each call's arrival time, and a task on the event loop
sleeps 1 ms at a time and writes how late it woke, with the loop thread's CPU time and its time waiting for a
core (``/proc/self/task/TID/schedstat``) over that sleep. A probe client, in its own process, sends one call
at a time tagged ``x-probe: N`` and writes its send and receive times, while the admission benchmark's load
generator (200 closed-loop clients honouring ``RetryInfo``) saturates the server. ``CLOCK_MONOTONIC`` is one
clock for every process on the machine, so the three logs line up. Per refused probe call:

* ``before``: send → the interceptor (the client's send, gRPC's core, the accept, the loop's queue);
* ``after``: the interceptor → the client's receipt (the abort, the status on the wire, the client's wake-up);
* ``accepted_ahead``: how many other calls the interceptor saw while the probe's call was on its way;

and for the loop: its lateness, and in its stalls longer than 5 ms the shares of running, waiting for a core,
and neither (blocked: the GIL, since its timer was due). This is how ``--accept-depth`` was found
(docs/inference.md, Admission control)::

    python -m bench.inference.refusal_timeline -- --max-concurrent-requests 32 --accept-depth 0
    python -m bench.inference.refusal_timeline -- --max-concurrent-requests 32 --data-plane-policy idle
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import uvloop
from grpc import aio

from bench.inference.fixtures import export_bench_model, write_images
from bench.inference.loadgen import build_requests
from bench.inference.run import PYTHON, ROOT, inference_server
from tfic.v1 import classifier_pb2_grpc

MODEL = "bench32"
_LOG = "TFIC_TIMELINE_LOG"


# ----------------------------------------------------------------------------- the instrumented server
def serve(argv: Sequence[str]) -> int:
    """``python -m inference_svc ARGV`` with the arrival log and the loop monitor (their files: $TFIC_TIMELINE_LOG)."""
    from inference_svc import admission, main, server

    path = os.environ[_LOG]
    arrivals = open(path, "w", buffering=1 << 20)  # noqa: SIM115 - open for the process's life, flushed at exit
    lags = open(path + ".loop", "w", buffering=1 << 20)  # noqa: SIM115
    intercept = admission.AdmissionInterceptor.intercept_service

    async def timed(self: admission.AdmissionInterceptor, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        tag = next((str(v) for k, v in details.invocation_metadata or () if k == "x-probe"), "-")
        arrivals.write(f"{tag} {time.monotonic_ns()}\n")
        return await intercept(self, continuation, details)

    async def monitor() -> None:
        stat = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
        while True:
            start, cpu, waited = time.monotonic_ns(), time.thread_time_ns(), int(os.pread(stat, 100, 0).split()[1])
            await asyncio.sleep(0.001)
            wall = (time.monotonic_ns() - start) / 1e6
            ran = (time.thread_time_ns() - cpu) / 1e6
            queued = (int(os.pread(stat, 100, 0).split()[1]) - waited) / 1e6
            lags.write(f"{start} {wall:.3f} {ran:.3f} {queued:.3f}\n")

    start = server.InferenceServer.start
    tasks: list[asyncio.Task[None]] = []

    async def started(self: server.InferenceServer) -> server.InferenceServer:
        result = await start(self)
        tasks.append(asyncio.ensure_future(monitor()))
        return result

    setattr(admission.AdmissionInterceptor, "intercept_service", timed)  # noqa: B010 - instrumentation
    setattr(server.InferenceServer, "start", started)  # noqa: B010
    try:
        return main.main(list(argv))
    finally:
        arrivals.close()
        lags.close()


# ----------------------------------------------------------------------------- the probe (its own process)
async def probe(target: str, images: Path, seconds: float, pause: float, out: Path) -> None:
    requests = build_requests([p.read_bytes() for p in sorted(images.glob("*.jpg"))], MODEL, 1)
    rows = []
    async with aio.insecure_channel(target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            sent = time.monotonic_ns()
            try:
                await stub.Classify(requests[n % len(requests)], timeout=60, metadata=(("x-probe", str(n)),))
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            rows.append((n, sent, time.monotonic_ns(), code))
            await asyncio.sleep(pause)
    out.write_text(json.dumps(rows))


# ----------------------------------------------------------------------------- the run
def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{p}": round(float(np.percentile(values, p)), 2) for p in (50, 90, 99)}


def analyse(log: Path, probed: Path) -> dict[str, Any]:
    arrivals: dict[int, int] = {}
    every = []
    for line in log.read_text().splitlines():
        tag, stamp = line.split()
        every.append(int(stamp))
        if tag != "-":
            arrivals[int(tag)] = int(stamp)
    seen = np.sort(np.asarray(every))
    before, after, total, ahead = [], [], [], []
    rows = json.loads(probed.read_text())
    for n, sent, received, code in rows:
        if code != "RESOURCE_EXHAUSTED" or n not in arrivals:
            continue
        at = arrivals[n]
        before.append((at - sent) / 1e6)
        after.append((received - at) / 1e6)
        total.append((received - sent) / 1e6)
        ahead.append(float(np.searchsorted(seen, at) - np.searchsorted(seen, sent)))  # others in [sent, at)
    first, last = min(r[1] for r in rows), max(r[2] for r in rows)
    late, stalls = [], []
    for line in Path(str(log) + ".loop").read_text().splitlines():
        stamp, wall, ran, queued = line.split()
        if first <= int(stamp) <= last:
            late.append(float(wall) - 1.0)
            if float(wall) > 6.0:
                stalls.append((float(wall), float(ran), float(queued)))
    spent = np.asarray(stalls).sum(axis=0) if stalls else np.zeros(3)
    return {
        "refused_probe_calls": len(total),
        "probe_calls": len(rows),
        "total_ms": percentiles(total),
        "before_interceptor_ms": percentiles(before),
        "after_interceptor_ms": percentiles(after),
        "calls_accepted_ahead": percentiles(ahead),
        "loop_timer_late_ms": percentiles(late),
        "loop_stalls_over_5ms": {
            "count": len(stalls),
            "seconds": round(float(spent[0]) / 1e3, 3),
            "share_running": round(float(spent[1] / spent[0]), 2) if stalls else None,
            "share_waiting_for_a_core": round(float(spent[2] / spent[0]), 2) if stalls else None,
            "share_blocked": round(float(1 - (spent[1] + spent[2]) / spent[0]), 2) if stalls else None,
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = args.work / "models-admission-32"
    export_bench_model(base, MODEL, 32)
    images = args.work / "images-640x480"
    write_images(images, 64, 640, 480)
    log = args.work / "timeline.log"
    os.environ[_LOG] = str(log)
    flags = ["--decode-workers", "2", *args.server_flags]
    entry = ["-m", "bench.inference.refusal_timeline", "serve"]
    with inference_server(base, MODEL, flags, entry=entry) as (target, _metrics):
        load = subprocess.Popen(
            [PYTHON, "-m", "bench.inference.admission", "client", "--target", target, "--images", str(images),
             "--concurrency", str(args.concurrency), "--seconds", str(args.seconds + 4)],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(2)  # the load generator's own warm-up
        probed = args.work / "timeline-probe.json"
        subprocess.run(
            [PYTHON, "-m", "bench.inference.refusal_timeline", "probe", target, str(images), str(args.seconds),
             str(args.probe_pause), str(probed)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        load.wait(120)
    return {"flags": flags, "concurrency": args.concurrency, **analyse(log, probed)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    if argv[:1] == ["probe"]:
        target, images, seconds, pause, out = argv[1:6]
        uvloop.run(probe(target, Path(images), float(seconds), float(pause), Path(out)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="the probe's run")
    parser.add_argument("--probe-pause", type=float, default=0.02)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tfic-bench-inference"))
    parser.add_argument("--output", type=Path, help="a JSON file for the result")
    parser.add_argument("server_flags", nargs="*", help="after --: the inference service's flags")
    args = parser.parse_args(argv)
    result = run(args)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=1)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
