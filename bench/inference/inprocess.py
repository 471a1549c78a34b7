"""The limit the server is measured against: same model, same images, same preprocessing, no RPC.

Decoding uses the service's own code (:meth:`Preprocessor.decode_one`, Pillow with ``draft``) in a
thread pool of the same size, inference the service's own :class:`TensorFlowRuntime`. For every
batch size it measures two loops and keeps the faster:

* sequential: decode a batch (in parallel threads), then run it;
* pipelined: decode batch k+1 in the pool while batch k runs (what a server overlaps for free).

It also measures the single-image latency (decode one image, run a batch of one), the reference
for the server's latency at concurrency 1. Prints one JSON object::

    python -m bench.inference.inprocess --model-dir BASE/bench32/1 --images DIR --decode-workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="a version directory")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--decode-workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size and loop")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--tf-intra-op-threads", type=int, default=0, help="0: TensorFlow's default (all cores)")
    parser.add_argument("--tf-inter-op-threads", type=int, default=0, help="0: TensorFlow's default")
    parser.add_argument("--mixed-precision", default="off", choices=("off", "float16", "bfloat16"))
    args = parser.parse_args(argv)
    print(json.dumps(measure(args)), flush=True)
    return 0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from inference_svc.preprocess import Preprocessor
    from inference_svc.runtime.tensorflow import TensorFlowOptions, TensorFlowRuntime, configure
    from tfic.modeldir import read_metadata

    configure(
        TensorFlowOptions(args.tf_intra_op_threads, args.tf_inter_op_threads, mixed_precision=args.mixed_precision)
    )
    meta = read_metadata(args.model_dir)
    runtime = TensorFlowRuntime(args.model_dir, meta)
    images = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    if not images:
        raise SystemExit(f"{args.images} holds no *.jpg files")
    height, width, _ = meta.image_shape
    pre = Preprocessor(args.decode_workers)
    pool = ThreadPoolExecutor(args.decode_workers)
    interpolation = meta.preprocessing.interpolation
    cursor = 0

    def decode_batch(n: int) -> np.ndarray:
        nonlocal cursor
        out = np.empty((n, height, width, 3), np.uint8)  # as the service decodes
        chosen = [images[(cursor + i) % len(images)] for i in range(n)]
        cursor += n
        futures = [
            pool.submit(pre.decode_one, data, (height, width), interpolation, out[i]) for i, data in enumerate(chosen)
        ]
        for f in futures:
            f.result()
        return out

    # Single-image latency: what one request costs with nothing else running.
    for _ in range(30):
        runtime.predict(decode_batch(1))
    latencies = []
    for _ in range(args.latency_samples):
        start = time.perf_counter()
        runtime.predict(decode_batch(1))
        latencies.append(time.perf_counter() - start)
    single_ms = float(np.percentile(np.asarray(latencies) * 1e3, 50))

    results = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        for _ in range(3):
            runtime.predict(decode_batch(size))
        # Sequential.
        done, start, cpu = 0, time.perf_counter(), _cpu_seconds()
        while time.perf_counter() - start < args.seconds:
            runtime.predict(decode_batch(size))
            done += size
        elapsed = time.perf_counter() - start
        sequential, sequential_cores = done / elapsed, (_cpu_seconds() - cpu) / elapsed
        # Pipelined: the next batch decodes while this one runs.
        feeder = ThreadPoolExecutor(1)
        done, start, cpu = 0, time.perf_counter(), _cpu_seconds()
        pending: Future[np.ndarray] = feeder.submit(decode_batch, size)
        while time.perf_counter() - start < args.seconds:
            batch = pending.result()
            pending = feeder.submit(decode_batch, size)
            runtime.predict(batch)
            done += size
        elapsed = time.perf_counter() - start
        pipelined, pipelined_cores = done / elapsed, (_cpu_seconds() - cpu) / elapsed
        pending.result()
        feeder.shutdown()
        results.append(
            {
                "batch_size": size,
                "sequential": sequential,
                "pipelined": pipelined,
                # CPU time / wall time of the faster loop: the cores the limit actually used.
                "cpu_cores": sequential_cores if sequential >= pipelined else pipelined_cores,
            }
        )
    best = max(results, key=lambda r: max(r["sequential"], r["pipelined"]))
    pool.shutdown()
    pre.close()
    return {
        "single_image_p50_ms": single_ms,
        "batches": results,
        "best_batch_size": best["batch_size"],
        "limit_images_per_second": max(best["sequential"], best["pipelined"]),
        "decode_workers": args.decode_workers,
        "tf_threads": [args.tf_intra_op_threads, args.tf_inter_op_threads],  # 0: TensorFlow's default
        "mixed_precision": args.mixed_precision,
        "images": len(images),
    }


if __name__ == "__main__":
    sys.exit(main())
