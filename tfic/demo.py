"""``make demo``: the main job on the embedded default dataset, start to finish.

1. Write scikit-learn's handwritten digits as one folder of PNGs per class.
2. Train a small CNN (full training) and publish the next version.
3. Evaluate it and classify a few images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tfic.cli.main import main as tfic


def _step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _run(argv: list[str]) -> None:
    print("$ tfic " + " ".join(argv), flush=True)
    code = tfic(argv)
    if code != 0:
        raise SystemExit(f"demo step failed: tfic {' '.join(argv)} exited with {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("TFIC_DEMO_DIR", "demo-output")))
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    from tfic.demo_data import write_digits

    out: Path = args.out
    data = out / "data" / "digits"
    models = out / "models"
    _step("1. the embedded dataset: scikit-learn digits as class folders")
    write_digits(data)
    print(f"wrote {sum(1 for _ in data.rglob('*.png'))} PNG images in 10 class folders under {data}")

    _step("2. full training: a small CNN from random weights")
    _run(
        [
            "train",
            str(data),
            "--model-base-path",
            str(models),
            "--model-name",
            "digits",
            "--model",
            "small_cnn",
            "--image_shape",
            "3,32,32",
            "--epochs",
            str(args.epochs),
            "--batch_size",
            "32",
            "--learning_rate",
            "0.003",
            "--label_smoothing",
            "0.05",
            "--validation_split_ratio",
            "0.2",
            "--early_stopping",
            "true",
            "--early_stopping_patience",
            "4",
            "--metrics-log",
            str(out / "train-log.jsonl"),
        ]
    )
    from tfic.modeldir import latest_version, read_metadata

    version = latest_version(models / "digits")
    version_dir = models / "digits" / str(version)
    meta = read_metadata(version_dir)
    accuracy = meta.metrics.get("validation:accuracy", 0.0)
    print(f"version {version}: validation accuracy {accuracy:.4f}")

    _step("3. evaluate on the whole dataset")
    _run(["evaluate", str(models / "digits"), str(data), "--confusion-png", str(out / "confusion_matrix.png")])

    _step("4. classify a few images")
    samples = [sorted((data / f"digit_{d}").glob("*.png"))[0] for d in (0, 3, 7)]
    _run(["predict", str(models / "digits"), *map(str, samples), "--top-k", "3"])

    summary = {"model": str(version_dir), "version": version, "validation_accuracy": accuracy}
    print("\n" + json.dumps(summary))
    if accuracy < 0.97:
        print(f"validation accuracy {accuracy:.4f} is below the demo's 0.97 floor", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
