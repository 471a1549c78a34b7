"""What writing TensorBoard event files costs a training run: the same run with and without them, interleaved.

Two tiny runs on the digits, each trained ``--rounds`` times with TensorBoard off and on, alternating (off, on,
off, on, …) so machine noise hits both sides:

* ``small_cnn``: a small CNN from scratch (16×16), 3 epochs, every epoch decoding images;
* ``frozen``: EfficientNet-Lite0 frozen (32×32), 4 head epochs on cached features, the fastest epochs tfic runs,
  where a fixed cost per epoch shows most.

Reported per run (medians): the wall time of the whole ``run()`` (TensorBoard's fixed costs are there: the
writers, the augmented sample grid, the confusion matrix PNG, the HParams record) and the mean epoch time from
the ``epoch`` events (its per-epoch costs: the scalars, the flushes, the loss every 50 steps).

    .venv/bin/python -m bench.tensorboard_overhead [--rounds 3] [--runs small_cnn frozen]
        [--out bench/results/tensorboard_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS: dict[str, dict[str, Any]] = {
    "small_cnn": {
        "hp": {"model": "small_cnn", "image_shape": "3,16,16", "epochs": "3", "batch_size": "32", "seed": "7"},
        "base_model": None,
        "per_class": 40,
    },
    "frozen": {
        "hp": {
            "image_shape": "3,32,32",
            "train_only_top_layer": "true",
            "epochs": "4",
            "batch_size": "32",
            "seed": "5",
            "export_epoch": "last",
        },
        "base_model": "efficientnet_lite0",
        "per_class": 40,
    },
}


def one_run(data: Path, base: Path, spec: dict[str, Any], tensorboard: bool) -> dict[str, float]:
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.train import Channel, TrainRequest, run

    events: list[dict[str, Any]] = []
    request = TrainRequest(
        train=Channel(str(data)),
        model_base_path=base,
        model_name="m",
        base_model=spec["base_model"],
        hyperparameters=hyperparameters.parse(spec["hp"]),
        tensorboard=tensorboard,
    )
    start = time.perf_counter()
    run(request, events.append)
    seconds = time.perf_counter() - start
    epochs = [float(e["seconds"]) for e in events if e["type"] == "epoch"]
    return {"run_seconds": seconds, "epoch_seconds": statistics.mean(epochs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS), help="which runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/tensorboard_overhead.json"))
    args = parser.parse_args(argv)
    from tfic_demo.digits import write_digits

    results: dict[str, Any] = {"rounds": args.rounds, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="tfic-tb-bench-") as tmp:
        work = Path(tmp)
        for name in args.runs:
            spec = RUNS[name]
            data = write_digits(work / f"data-{name}", per_class=spec["per_class"])
            one_run(data, work / "warm", spec, True)  # graph tracing, weight conversion caches: not measured
            samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            for r in range(args.rounds):
                for mode in ("off", "on"):
                    samples[mode].append(one_run(data, work / f"{name}-{mode}-{r}", spec, mode == "on"))
            summary: dict[str, Any] = {}
            for key in ("run_seconds", "epoch_seconds"):
                off = statistics.median(s[key] for s in samples["off"])
                on = statistics.median(s[key] for s in samples["on"])
                summary[key] = {"off": round(off, 4), "on": round(on, 4), "on_over_off": round(on / off, 3)}
            results["runs"][name] = summary
            print(name, json.dumps(summary), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
