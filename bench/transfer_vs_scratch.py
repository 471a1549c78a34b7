"""Transfer learning (EfficientNet-Lite0, real ImageNet weights) vs full training from scratch.

Same data, same validation images, one run. Default data: crops of scikit-image's photos
(bench/photo_crops.py), 10 training and 30 validation images per class, 8 classes.

    .venv/bin/python -m bench.transfer_vs_scratch [--train-per-class 10] [--data DIR --validation DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _train(
    data: Path, validation: Path, base: Path, name: str, hp: dict[str, str], base_model: str | None
) -> dict[str, Any]:
    from tfic import modeldir
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.train import Channel, TrainRequest, run

    start = time.perf_counter()
    result = run(
        TrainRequest(
            train=Channel(str(data)),
            validation=Channel(str(validation)),
            model_base_path=base,
            model_name=name,
            base_model=base_model,
            hyperparameters=hyperparameters.parse(hp),
        )
    )
    assert result.path is not None
    meta = modeldir.read_metadata(result.path)
    return {
        "validation_accuracy": round(meta.metrics["validation:accuracy"], 4),
        "seconds": round(time.perf_counter() - start, 1),
        "hyperparameters": hp,
        "base_model": base_model,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="training class folders (default: photo crops)")
    parser.add_argument("--validation", type=Path, help="validation class folders")
    parser.add_argument("--train-per-class", type=int, default=5)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--color", action="store_true", help="keep colour (default: greyscale crops, a harder task)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/transfer_vs_scratch.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.data:
            data, validation = args.data, args.validation
        else:
            from bench.photo_crops import write_photo_crops

            gray = not args.color
            data = write_photo_crops(root / "train", args.train_per_class, seed=1, grayscale=gray)
            validation = write_photo_crops(root / "val", args.val_per_class, seed=2, grayscale=gray)
        transfer = _train(
            data, validation, root / "m", "transfer",
            {"train_only_top_layer": "true", "epochs": "10", "learning_rate": "0.01", "batch_size": "16",
             "augmentation": "true", "augmentation_random_rotation": "0.05"},
            "efficientnet_lite0",
        )  # fmt: skip
        scratch_small = _train(
            data, validation, root / "m", "scratch_cnn",
            {"model": "small_cnn", "image_shape": "3,64,64", "epochs": "40", "learning_rate": "0.003",
             "batch_size": "16", "augmentation": "true", "augmentation_random_rotation": "0.05"},
            None,
        )  # fmt: skip
        scratch_resnet = _train(
            data, validation, root / "m", "scratch_resnet",
            {"model": "resnet", "num_layers": "20", "image_shape": "3,64,64", "epochs": "40", "learning_rate": "0.003",
             "batch_size": "16", "augmentation": "true", "augmentation_random_rotation": "0.05"},
            None,
        )  # fmt: skip
    result = {
        "data": str(
            args.data
            or f"{'colour' if args.color else 'greyscale'} photo crops, "
            f"{args.train_per_class} train / {args.val_per_class} val per class"
        ),
        "transfer_efficientnet_lite0_frozen": transfer,
        "scratch_small_cnn": scratch_small,
        "scratch_resnet20": scratch_resnet,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
