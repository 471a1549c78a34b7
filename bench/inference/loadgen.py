"""gRPC load generator for ``tfic.v1.Classifier/Classify`` (one image per request).

Two modes:

* closed loop (``--concurrency 1,2,4,…``): N workers, each sends its next request as soon as the
  previous answer arrives; measures the throughput the server sustains at that concurrency;
* fixed rate (``--rate R``): requests leave on a fixed schedule whatever the answers do; latency is
  measured from the *scheduled* send time, so a stalled server cannot hide its queueing
  (no coordinated omission).

Prints one JSON object per run (throughput, p50/p90/p99 in ms, errors by code)::

    python -m bench.inference.loadgen --target 127.0.0.1:8500 --model bench32 \\
        --images bench/inference/.work/images --concurrency 1,4,16 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
import uvloop
from grpc import aio

from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2


@dataclass
class RunResult:
    mode: str
    concurrency: int = 0
    rate: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    throughput: float = 0.0
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")
    errors: dict[str, int] = field(default_factory=dict)

    def finish(self, latencies: list[float], seconds: float, errors: Counter[str]) -> RunResult:
        self.requests = len(latencies)
        self.seconds = seconds
        self.throughput = len(latencies) / seconds if seconds > 0 else 0.0
        if latencies:
            ms = np.asarray(latencies) * 1e3
            self.p50_ms, self.p90_ms, self.p99_ms = (float(np.percentile(ms, p)) for p in (50, 90, 99))
            self.mean_ms = float(ms.mean())
        self.errors = dict(errors)
        return self


def build_requests(images: Sequence[bytes], model: str, top_k: int) -> list[classifier_pb2.ClassifyRequest]:
    spec = common_pb2.ModelSpec(name=model)
    return [classifier_pb2.ClassifyRequest(model=spec, images=[data], top_k=top_k) for data in images]


async def closed_loop(
    stub: classifier_pb2_grpc.ClassifierAsyncStub,
    requests: list[classifier_pb2.ClassifyRequest],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> RunResult:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def worker(offset: int) -> None:
        i = offset
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            try:
                await stub.Classify(requests[i % len(requests)], timeout=60)
                ok = True
            except grpc.RpcError as exc:
                ok = False
                code = exc.code().name if exc.code() is not None else "UNKNOWN"
            done = time.perf_counter()
            if sent >= measure_from and done <= stop_at:
                if ok:
                    latencies.append(done - sent)
                else:
                    errors[code] += 1
            i += concurrency

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return RunResult("closed", concurrency=concurrency).finish(latencies, seconds, errors)


async def fixed_rate(
    stub: classifier_pb2_grpc.ClassifierAsyncStub,
    requests: list[classifier_pb2.ClassifyRequest],
    rate: float,
    seconds: float,
    warmup: float,
) -> RunResult:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter() + 0.05
    total = int((warmup + seconds) * rate)
    measure_from = start + warmup
    tasks = []

    async def one(i: int, scheduled: float) -> None:
        try:
            await stub.Classify(requests[i % len(requests)], timeout=60)
            ok = True
        except grpc.RpcError as exc:
            ok = False
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
        if scheduled >= measure_from:
            if ok:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors[code] += 1

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the send schedule itself
        tasks.append(asyncio.ensure_future(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return RunResult("fixed_rate", rate=rate).finish(latencies, seconds, errors)


async def run(args: argparse.Namespace) -> list[RunResult]:
    paths = sorted(Path(args.images).glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no *.jpg images in {args.images}")
    requests = build_requests([p.read_bytes() for p in paths], args.model, args.top_k)
    results = []
    async with aio.insecure_channel(args.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        for concurrency in args.concurrency:
            result = await closed_loop(stub, requests, concurrency, args.seconds, args.warmup)
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)
        for rate in args.rate:
            result = await fixed_rate(stub, requests, rate, args.seconds, args.warmup)
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)
    return results


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="HOST:PORT of the inference service")
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True, help="directory of *.jpg files sent round-robin")
    parser.add_argument("--concurrency", type=_ints, default=[], help="closed-loop sweep, e.g. 1,2,4,8,16,32,64")
    parser.add_argument("--rate", type=_floats, default=[], help="fixed-rate runs in requests/s, e.g. 100,200")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each run")
    parser.add_argument("--top-k", type=int, default=1)
    args = parser.parse_args(argv)
    uvloop.run(run(args))  # the inference service's loop: less of the shared cores goes to the client
    return 0


if __name__ == "__main__":
    sys.exit(main())
