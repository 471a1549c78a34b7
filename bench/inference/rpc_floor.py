"""What one ``Classify`` RPC costs before any decoding or inference: the floor under the server's overhead.

Starts a ``grpc.aio`` server in a child process whose ``tfic.v1.Classifier/Classify`` does nothing
but answer with a fixed response (no decode, no batching, no model), on the same gRPC version and
options as the inference service, and drives it with the benchmark's own load generator
(:func:`bench.inference.loadgen.closed_loop`, the same requests). Reports requests/s and the CPU
each request costs in the server process (from ``/proc``) and in the load generator (``getrusage``)::

    python -m bench.inference.rpc_floor --images bench/inference/.work/images --concurrency 1,16

``--hold-ms 0,4,8,16`` gives each call that much work, on a worker thread (busy, not asleep) while the event
loop waits, as a batch runs: what a call costs above its work when the machine's other threads sleep
meanwhile (their wake-ups), the floor under the server's latency at one client (docs/benchmarks.md).

:mod:`bench.inference.run` compares the result with the in-process limit: a server reaching a
fraction F of that limit must fit F × limit requests/s of RPC work *and* F × limit images/s of decode
and inference into the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import uvloop
from grpc import aio

from bench.inference.loadgen import build_requests, closed_loop
from tfic.v1 import classifier_pb2, classifier_pb2_grpc


class _NoOpClassifier(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self, hold_ms: float = 0.0) -> None:
        self.hold = hold_ms / 1e3
        result = classifier_pb2.Classification(
            probabilities=[0.9], labels=["a"], label_indices=[0], predicted_label="a", predicted_index=0
        )
        self.response = classifier_pb2.ClassifyResponse(model_name="floor", model_version=1, results=[result])

    async def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        if self.hold:  # a worker thread busy for the work's time, the loop idle meanwhile: as a batch runs
            await asyncio.get_running_loop().run_in_executor(None, _spin, self.hold)
        return self.response

    # The floor measures Classify alone; the other methods exist because the servicer's base declares them.
    async def ListModels(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the RPC floor serves Classify only")

    async def GetModel(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the RPC floor serves Classify only")


_CHUNK = bytes(256 * 1024)


def _spin(seconds: float) -> None:
    """Busy, not asleep, and mostly without the GIL, as a model's kernels run: the core stays awake.

    hashlib releases the GIL while it hashes a large buffer; a Python busy loop would hold it throughout.
    """
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        hashlib.sha256(_CHUNK)


async def _serve(hold_ms: float) -> None:
    server = aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    classifier_pb2_grpc.add_ClassifierServicer_to_server(_NoOpClassifier(hold_ms), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    images: Sequence[bytes], concurrency: Sequence[int], seconds: float, hold_ms: float = 0.0
) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "bench.inference.rpc_floor", "--serve", "--hold-ms", str(hold_ms)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        target = f"127.0.0.1:{int(child.stdout.readline())}"
        requests = build_requests(images, "floor", 1)
        rows = []
        async with aio.insecure_channel(target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            for c in concurrency:
                await closed_loop(stub, requests, c, 0.5, 0.5)  # warm-up
                server_before, client_before = _cpu_seconds(child.pid), _own_cpu_seconds()
                start = time.perf_counter()
                result = await closed_loop(stub, requests, c, seconds, 0.0)
                elapsed = time.perf_counter() - start
                server_ms = (_cpu_seconds(child.pid) - server_before) * 1e3 / max(result.requests, 1)
                client_ms = (_own_cpu_seconds() - client_before) * 1e3 / max(result.requests, 1)
                rows.append(
                    {
                        "concurrency": c,
                        "requests_per_second": result.throughput,
                        "p50_ms": result.p50_ms,
                        "hold_ms": hold_ms,
                        "p50_over_hold_ms": result.p50_ms - hold_ms,
                        "server_cpu_ms_per_request": server_ms,
                        "client_cpu_ms_per_request": client_ms,
                        "seconds": elapsed,
                    }
                )
        return rows
    finally:
        child.terminate()
        child.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help="directory of *.jpg files sent round-robin")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--hold-ms",
        default="0",
        help="comma-separated: each call holds a worker thread busy this long (the model's time), one server each",
    )
    args = parser.parse_args(argv)
    if args.serve:
        uvloop.run(_serve(float(args.hold_ms)))  # as the inference service runs by default
        return 0
    if args.images is None:
        parser.error("--images is required")
    images = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    if not images:
        parser.error(f"{args.images} holds no *.jpg files")
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = [
        row
        for hold in args.hold_ms.split(",")
        for row in uvloop.run(measure(images, levels, args.seconds, float(hold)))
    ]
    print(json.dumps({"rows": rows}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
