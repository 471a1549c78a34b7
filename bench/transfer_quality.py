"""Transfer-learning quality on real photos: tfic's defaults against a frozen backbone and SageMaker's literal defaults.

Every configuration runs as a user would run it (`tfic train ... --base-model efficientnet_lite0`, one
process each, one after another in one run of this script), on the same training and validation images:

* `defaults`: nothing but `--base-model efficientnet_lite0` (tfic's recipe: head warm-up on cached
  features, then a fine-tune with decay, the best epoch published);
* `frozen`: `train_only_top_layer=true --epochs 6`, the frozen-backbone baseline;
* `frozen_uncached`: the same without the feature cache (`cache_backbone_features=false`), i.e. what a
  frozen epoch cost before the cache: the epoch-time ratio of the two is the fast path's speed-up;
* `sagemaker`: `recipe=sagemaker`, SageMaker's TF algorithm's literal defaults (a full fine-tune at
  learning_rate 0.001 for 3 epochs, last epoch published);
* `incremental_from_frozen` / `incremental_from_defaults`: `--base-model <that version>` with defaults.

Datasets: `../shared/datasets/clothing-small` (3,068 train / 341 validation real clothing photos, 10
classes; skipped with a message when absent) and the photo crops of `bench/photo_crops.py`.

    .venv/bin/python -m bench.transfer_quality                       # everything (about an hour on 2 cores)
    .venv/bin/python -m bench.transfer_quality --datasets crops --configs defaults,frozen
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = ROOT.parent / "shared" / "datasets" / "clothing-small"
BACKBONE = "efficientnet_lite0"

CONFIGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "frozen": {"train_only_top_layer": "true", "epochs": "6"},
    "frozen_uncached": {"train_only_top_layer": "true", "epochs": "6", "cache_backbone_features": "false"},
    "sagemaker": {"recipe": "sagemaker"},
}
# name → (the configuration whose version it continues from, hyperparameters)
INCREMENTAL: dict[str, tuple[str, dict[str, str]]] = {
    "incremental_from_frozen": ("frozen", {}),
    "incremental_from_defaults": ("defaults", {}),
}


def train(train_dir: Path, val_dir: Path, base: Path, name: str, base_model: str, hp: dict[str, str]) -> dict[str, Any]:
    """One `tfic train` process; its events summarised."""
    cmd = [sys.executable, "-m", "tfic_cli", "train", str(train_dir), "--validation", str(val_dir),
           "--model-base-path", str(base), "--model-name", name, "--base-model", base_model,
           "--json", "--no-progress"]  # fmt: skip
    for key, value in hp.items():
        cmd += [f"--{key}", value]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: tfic train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    epochs = [e for e in events if e["type"] == "epoch"]
    model = next(e for e in events if e["type"] == "model")
    features = next((e for e in events if e["type"] == "features"), None)
    base_event = next((e for e in events if e["type"] == "base"), None)
    return {
        "hyperparameters": hp,
        "base_model": base_model,
        "version_path": model["path"],
        "validation_accuracy": round(model["metrics"]["validation:accuracy"], 4),
        "exported_epoch": model.get("exported_epoch"),
        "last_epoch_validation_accuracy": round(epochs[-1]["metrics"]["val_accuracy"], 4),
        "base_validation_accuracy": round(base_event["metrics"]["val_accuracy"], 4) if base_event else None,
        "wall_seconds": round(wall, 1),
        "training_seconds": round(sum(e["seconds"] for e in epochs) + (features["seconds"] if features else 0), 1),
        "feature_extraction_seconds": features["seconds"] if features else None,
        "epochs": [
            {
                "epoch": e["epoch"],
                "phase": e.get("phase", ""),
                "seconds": e["seconds"],
                # From the previous epoch's end: includes checkpoints and best-weight saves between epochs.
                "wall_seconds": round(e["time"] - epochs[i - 1]["time"], 3) if i > 0 else None,
                "val_accuracy": round(e["metrics"]["val_accuracy"], 4),
                "val_loss": round(e["metrics"]["val_loss"], 4),
            }
            for i, e in enumerate(epochs)
        ],
    }


def later_epoch_seconds(run: dict[str, Any]) -> float:
    """Median wall seconds of the head epochs after the first (end to end, checkpoints included)."""
    seconds = [e["wall_seconds"] for e in run["epochs"] if e["phase"] == "head" and e["wall_seconds"] is not None]
    return statistics.median(seconds) if seconds else float("nan")


def run_dataset(
    label: str, train_dir: Path, val_dir: Path, work: Path, configs: list[str], incremental: list[str]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in configs:
        print(f"[{label}] {name} ...", flush=True)
        results[name] = train(train_dir, val_dir, work, name, BACKBONE, CONFIGS[name])
        print(f"[{label}] {name}: {json.dumps({k: v for k, v in results[name].items() if k != 'epochs'})}", flush=True)
    for name in incremental:
        source, hp = INCREMENTAL[name]
        if source not in results:
            continue
        print(f"[{label}] {name} ...", flush=True)
        results[name] = train(train_dir, val_dir, work, name, results[source]["version_path"], hp)
        print(f"[{label}] {name}: {json.dumps({k: v for k, v in results[name].items() if k != 'epochs'})}", flush=True)
    if "frozen" in results and "frozen_uncached" in results:
        cached, uncached = later_epoch_seconds(results["frozen"]), later_epoch_seconds(results["frozen_uncached"])
        results["frozen_epoch_speedup"] = round(uncached / cached, 1) if cached > 0 else None
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | configuration | validation accuracy (published) | epoch published | last epoch | wall time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for dataset, runs in results["datasets"].items():
        for name, r in runs.items():
            if not isinstance(r, dict):
                continue
            lines.append(
                f"| {dataset} | {name} | {r['validation_accuracy']:.4f} | {r['exported_epoch']} | "
                f"{r['last_epoch_validation_accuracy']:.4f} | {r['wall_seconds'] / 60:.1f} min |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clothing", type=Path, default=CLOTHING, help="clothing-small (train/ and validation/)")
    parser.add_argument("--datasets", default="clothing,crops", help="comma-separated: clothing, crops")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--incremental", default=",".join(INCREMENTAL), help="comma-separated, or 'none'")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "transfer_quality.json")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}")
    incremental = [] if args.incremental == "none" else [c for c in args.incremental.split(",") if c]
    datasets = args.datasets.split(",")
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="tfic-transfer-quality-") as tmp:
        root = Path(tmp)
        if "clothing" in datasets:
            if (args.clothing / "train").is_dir() and (args.clothing / "validation").is_dir():
                results["datasets"]["clothing-small"] = run_dataset(
                    "clothing-small",
                    args.clothing / "train",
                    args.clothing / "validation",
                    root / "clothing",
                    configs,
                    incremental,
                )
            else:
                print(f"skipping clothing-small: {args.clothing} has no train/ and validation/ folders", flush=True)
        if "crops" in datasets:
            from bench.photo_crops import write_photo_crops

            crops_train = write_photo_crops(root / "crops-train", 10, seed=1)
            crops_val = write_photo_crops(root / "crops-val", 30, seed=2)
            results["datasets"]["photo-crops"] = run_dataset(
                "photo-crops", crops_train, crops_val, root / "crops", configs, incremental
            )
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    for dataset, runs in results["datasets"].items():
        if runs.get("frozen_epoch_speedup"):
            speedup = runs["frozen_epoch_speedup"]
            print(f"{dataset}: frozen-backbone epochs after the first, cached vs uncached: {speedup}x")


if __name__ == "__main__":
    main()
