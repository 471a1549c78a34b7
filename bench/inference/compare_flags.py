"""Server settings side by side: the same model, images and closed-loop sweep against servers started with
different flags, interleaved over rounds so drift hits every variant alike; each point keeps its best round.

This is how the default ``--num-batch-threads`` was chosen (docs/inference.md, Tuning)::

    python -m bench.inference.compare_flags --size 96 \\
        --variant "--num-batch-threads 1" --variant "--num-batch-threads 2" \\
        --variant "--no-enable-batching --num-batch-threads 2"

Prints a Markdown table of images/s (one image per request) with the server's mean batch size in
brackets, and writes the runs as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.inference.fixtures import export_bench_model, parse_model_spec, write_images
from bench.inference.run import _run_load, inference_server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96, help="input size of the benchmark's small CNN")
    parser.add_argument(
        "--model", help="NAME:SIZE or NAME:BACKBONE instead of --size (e.g. imagenet:efficientnet_lite0)"
    )
    parser.add_argument("--variant", action="append", required=True, help="server flags of one variant")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tfic-bench-inference"))
    parser.add_argument("--output", type=Path, help="JSON file for every run")
    args = parser.parse_args(argv)
    model, kind = parse_model_spec(args.model) if args.model else (f"bench{args.size}", args.size)
    base = args.work / f"models-{model}"
    export_bench_model(base, model, kind)
    images = args.work / "images"
    write_images(images, 64, 640, 480)
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: dict[str, dict[int, list[float]]] = {v: {c: [] for c in levels} for v in args.variant}
    batches: dict[str, dict[int, list[float]]] = {v: {c: [] for c in levels} for v in args.variant}
    for round_ in range(args.rounds):
        for variant in args.variant if round_ % 2 == 0 else args.variant[::-1]:
            print(f"== round {round_ + 1}/{args.rounds}: {variant}", file=sys.stderr, flush=True)
            with inference_server(base, model, variant.split()) as (target, metrics):
                for c in levels:
                    result = _run_load(target, metrics, model, images, args.seconds, ["--concurrency", str(c)])
                    runs[variant][c].append(result["throughput"])
                    batches[variant][c].append(result["server"]["mean_batch_size"])
    header = "| clients | " + " | ".join(f"`{v}`" for v in args.variant) + " |"
    lines = [header, "|---:|" + "---:|" * len(args.variant)]
    for c in levels:
        cells = []
        for v in args.variant:
            best = max(range(len(runs[v][c])), key=runs[v][c].__getitem__)
            cells.append(f"{runs[v][c][best]:.0f} ({batches[v][c][best]:.1f})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.output is not None:
        report: dict[str, Any] = {
            "model": model,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "runs": runs,
            "mean_batch_size": batches,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
