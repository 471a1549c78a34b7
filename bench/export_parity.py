"""Edge export parity on real photos: TFLite (float32, float16, int8) and ONNX against the SavedModel they came from.

A model trained as a user would (`tfic train ../shared/datasets/clothing-small/train --base-model efficientnet_lite0
--train_only_top_layer true`, unless `--model` names an existing version) is exported with `tfic export` in each
format, int8 calibrated on `--calibration-images` training photos. Every validation photo (341 real clothing photos,
never seen in training or calibration) is decoded once with tfic's preprocessing definition and fed to the
SavedModel (`predict_images`, what the inference service runs) and to each export, one image at a time as an edge
interpreter runs it. Reported per export: top-1 label agreement with the SavedModel, max and mean |Δp| over every
class probability, accuracy against the true labels (the SavedModel's too), file size, and ms per image.

    .venv/bin/python -m bench.export_parity                               # trains first (~5 min on 2 cores)
    .venv/bin/python -m bench.export_parity --model models/clothing/1     # an existing version of clothing-small
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = ROOT.parent / "shared" / "datasets" / "clothing-small"
EXPORTS = {
    "tflite_float32": ["--format", "tflite"],
    "tflite_float16": ["--format", "tflite", "--quantize", "float16"],
    "tflite_int8": ["--format", "tflite", "--quantize", "int8"],
    "onnx_float32": ["--format", "onnx"],
}


def tfic(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tfic_cli", *argv], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"tfic {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def train(train_dir: Path, base: Path) -> Path:
    tfic("train", str(train_dir), "--model-base-path", str(base), "--model-name", "clothing",
         "--base-model", "efficientnet_lite0", "--train_only_top_layer", "true", "--no-progress")  # fmt: skip
    return base / "clothing" / "1"


def validation_pixels(val_dir: Path, version: Path) -> tuple[np.ndarray, list[str], list[str]]:
    from tfic.imaging import decode_resize
    from tfic.modeldir import read_metadata

    meta = read_metadata(version)
    height, width, _ = meta.image_shape
    paths = sorted(p for p in val_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"{val_dir} holds no images")
    pixels = np.stack([decode_resize(p.read_bytes(), (height, width), meta.preprocessing.interpolation) for p in paths])
    return pixels.astype(np.float32), [p.parent.name for p in paths], list(meta.labels)


def timed(predict: Any, pixels: np.ndarray) -> tuple[np.ndarray, float]:
    predict(pixels[:2])  # warm-up: the first call builds kernels/delegates
    start = time.perf_counter()
    out = np.asarray(predict(pixels))
    return out, (time.perf_counter() - start) * 1000 / len(pixels)


def one_at_a_time(run: Any) -> Any:
    return lambda pixels: np.concatenate([run(p[np.newaxis]) for p in pixels])


def compare(reference: np.ndarray, got: np.ndarray, truth: list[str], labels: list[str]) -> dict[str, Any]:
    delta = np.abs(got - reference)
    predicted = [labels[i] for i in got.argmax(1)]
    return {
        "label_agreement": float(np.mean(got.argmax(1) == reference.argmax(1))),
        "max_abs_delta_p": float(delta.max()),
        "mean_abs_delta_p": float(delta.mean()),
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clothing", type=Path, default=CLOTHING, help="clothing-small (train/ and validation/)")
    parser.add_argument("--model", type=Path, help="an existing version trained on clothing-small (default: train one)")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_parity.json")
    args = parser.parse_args()
    train_dir, val_dir = args.clothing / "train", args.clothing / "validation"
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise SystemExit(f"skipping: {args.clothing} has no train/ and validation/ folders (../shared/datasets)")

    import tensorflow as tf

    from trainer_svc.training.edge_export import TFLiteClassifier

    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "exports": {}}
    with tempfile.TemporaryDirectory(prefix="tfic-export-parity-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        version = args.model.resolve() if args.model else train(train_dir, work / "models")
        results["train_seconds"] = None if args.model else round(time.perf_counter() - started, 1)
        pixels, truth, labels = validation_pixels(val_dir, version)
        from tfic.modeldir import read_metadata

        meta = read_metadata(version)
        results.update(
            model=str(args.model or "efficientnet_lite0, train_only_top_layer=true, on clothing-small/train"),
            architecture=meta.architecture,
            hyperparameters=meta.hyperparameters,
            validation_images=len(truth),
            calibration_images=args.calibration_images,
            saved_model_bytes=sum(f.stat().st_size for f in version.rglob("*") if f.is_file()),
        )
        signature = tf.saved_model.load(str(version)).signatures["predict_images"]
        reference, ms = timed(
            one_at_a_time(lambda x: signature(images=tf.constant(x))["probabilities"].numpy()), pixels
        )
        results["saved_model"] = {
            "accuracy": float(np.mean([labels[i] == t for i, t in zip(reference.argmax(1), truth, strict=True)])),
            "ms_per_image": round(ms, 2),
        }
        for name, flags in EXPORTS.items():
            out = work / name
            calibration = ["--calibration", str(train_dir), "--calibration-images", str(args.calibration_images)]
            started = time.perf_counter()
            printed = json.loads(tfic("export", str(version), "--output", str(out), *flags,
                                      *(calibration if "int8" in flags else [])))  # fmt: skip
            seconds = time.perf_counter() - started
            if name.startswith("onnx"):
                import onnxruntime

                session = onnxruntime.InferenceSession(printed["model"])
                run = one_at_a_time(lambda x, s=session: s.run(None, {"images": x})[0])
            else:
                run = TFLiteClassifier(Path(printed["model"])).predict
            got, ms = timed(run, pixels)
            results["exports"][name] = {
                **compare(reference, got, truth, labels),
                "bytes": printed["bytes"],
                "ms_per_image": round(ms, 2),
                "export_seconds": round(seconds, 1),
            }
            print(name, json.dumps(results["exports"][name]), flush=True)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
