"""Parity on real photos: does every tfic path give the exported model's own answer?

Trains a transfer model (EfficientNet-Lite0, real ImageNet weights, top layer only, 224×224) on part of
clothing-small's training photos with its 341 validation photos as the validation channel, then sends the
validation photos through every path and compares each with the exported ``serving_default`` signature
(what plain TensorFlow Serving computes): max |Δp|, images whose predicted label differs, accuracy.

Rows: training's validation pass (its recorded metric and the tf.data pipeline's probabilities), ``tfic
evaluate``, ``tfic predict``, the inference service's Classify and TF Serving Predict, the gateway; then
the opt-in full JPEG decode (``--no-use-draft``), the one difference plain TF Serving keeps (the photos
re-encoded on their side with an EXIF orientation: signature vs tfic's definition), and the two paths
before issue 14 (service vs signature, as measured in the issue). Skips, with a message, without the data::

    python -m bench.parity [--train-per-class 40] [--epochs 5] [--out bench/results/parity.json]
    python -m bench.parity --report bench/results/parity.json    # the table in docs/inference.md
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "clothing-small"
MODEL = "clothing"


def _subset(train: Path, per_class: int, root: Path) -> Path:
    """``per_class`` photos of each class as symlinks (the data set is never copied)."""
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:per_class]:
            (root / folder.name / photo.name).symlink_to(photo)
    return root


def _train(data: Path, validation: Path, base: Path, epochs: int) -> Path:
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.train import Channel, TrainRequest, run

    hp = {"train_only_top_layer": "true", "epochs": str(epochs), "learning_rate": "0.01", "batch_size": "16"}
    result = run(
        TrainRequest(
            train=Channel(str(data)),
            validation=Channel(str(validation)),
            model_base_path=base,
            model_name=MODEL,
            base_model="efficientnet_lite0",
            hyperparameters=hyperparameters.parse(hp),
        )
    )
    assert result.path is not None
    return result.path


def _row(name: str, probabilities: np.ndarray, reference: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    labels = probabilities.argmax(axis=1)
    return {
        "path": name,
        "max_abs_dp": float(np.abs(probabilities - reference).max()),
        "labels_differing": int((labels != reference.argmax(axis=1)).sum()),
        "accuracy": float((labels == truth).mean()),
    }


def _enlarged(data: bytes) -> bytes:
    """The photo at twice its size (JPEG q90): large enough that the definition decodes it at 1/2 scale."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    img.resize((img.width * 2, img.height * 2), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _rotated(data: bytes) -> bytes:
    """The photo stored on its side with EXIF orientation 6: displayed as before, decoded sideways by TF."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def measure(data_root: Path, per_class: int, epochs: int) -> dict[str, Any]:
    import grpc
    import httpx
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from bench.legacy_preprocessing import graph_decode_resize, service_decode_resize
    from gateway.settings import GatewaySettings
    from tests.gateway.servers import run_gateway, run_inference
    from tfic.imaging import decode_resize
    from tfic.modeldir import read_metadata
    from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2
    from trainer_svc.data.loader import load_source, scan
    from trainer_svc.training.evaluate import evaluate
    from trainer_svc.training.hyperparameters import Hyperparameters
    from trainer_svc.training.pipeline import InputSpec, make_dataset
    from trainer_svc.training.predict import LocalPredictor, predict_paths

    validation = data_root / "validation"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        version = _train(_subset(data_root / "train", per_class, root / "train"), validation, root / "m", epochs)
        train_seconds = time.perf_counter() - start
        meta = read_metadata(version)
        size = meta.image_shape[:2]
        source = scan(load_source(str(validation)))
        paths = [Path(s.path) for s in source.samples if s.path is not None]
        assert len(paths) == len(source.samples), "a class-folder source names a file for every sample"
        photos = [p.read_bytes() for p in paths]
        truth = np.asarray([meta.labels.index(p.parent.name) for p in paths])
        loaded = tf.saved_model.load(str(version))
        serve_bytes, serve_images = loaded.signatures["serving_default"], loaded.signatures["predict_images"]

        def batched(fn: Callable[[list[Any]], np.ndarray], items: list[Any], n: int = 32) -> np.ndarray:
            return np.concatenate([fn(items[i : i + n]) for i in range(0, len(items), n)])

        def on_bytes(chunk: list[bytes]) -> np.ndarray:
            return np.asarray(serve_bytes(image_bytes=tf.constant(chunk))["probabilities"].numpy())

        def on_pixels(decode: Callable[[bytes], np.ndarray]) -> Callable[[list[bytes]], np.ndarray]:
            def run(chunk: list[bytes]) -> np.ndarray:
                pixels = np.stack([decode(d) for d in chunk]).astype(np.float32)
                return np.asarray(serve_images(images=tf.constant(pixels))["probabilities"].numpy())

            return run

        reference = batched(on_bytes, photos)
        rows = [_row("exported serving_default signature (plain TF Serving)", reference, reference, truth)]
        own = batched(on_pixels(lambda d: decode_resize(d, size)), photos)
        rows.append(_row("tfic.imaging definition → predict_images", own, reference, truth))
        spec = InputSpec(meta.image_shape, meta.preprocessing.interpolation, source.num_classes)
        pipeline = np.concatenate(
            [
                serve_images(images=x)["probabilities"].numpy()
                for x, _ in make_dataset(source, spec, 32, False, Hyperparameters())
            ]
        )
        rows.append(_row("training's validation pipeline (tf.data)", pipeline, reference, truth))
        rows[-1]["recorded_validation_accuracy"] = meta.metrics["validation:accuracy"]
        evaluation = evaluate(version, source)
        rows.append({"path": "tfic evaluate", "accuracy": evaluation.accuracy, "images": evaluation.images})
        predicted = {r["source"]: r["probabilities"] for r in predict_paths(LocalPredictor(version), paths)}
        rows.append(_row("tfic predict", np.asarray([predicted[str(p)] for p in paths]), reference, truth))

        base = root / "serving"
        shutil.copytree(version, base / MODEL / "1")
        with run_inference(base) as inference, grpc.insecure_channel(inference.target) as channel:
            classifier = classifier_pb2_grpc.ClassifierStub(channel)

            def classify(chunk: list[bytes]) -> np.ndarray:
                request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=chunk)
                return np.asarray([list(r.probabilities) for r in classifier.Classify(request, timeout=120).results])

            rows.append(_row("inference service Classify (gRPC)", batched(classify, photos), reference, truth))
            predictor = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def tfserving_predict(chunk: list[bytes]) -> np.ndarray:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = MODEL
                request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(chunk, dtype=tf.string))
                return np.asarray(tf.make_ndarray(predictor.Predict(request, timeout=120).outputs["probabilities"]))

            rows.append(
                _row("inference service TF Serving Predict", batched(tfserving_predict, photos), reference, truth)
            )
            settings = GatewaySettings(inference=inference.target, default_model=MODEL)
            with run_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=120) as client:
                headers = {"Content-Type": "application/x-image", "Accept": "application/json;verbose"}
                answers = [
                    client.post(f"/models/{MODEL}/invocations", content=d, headers=headers).json()["probabilities"]
                    for d in photos
                ]
                rows.append(_row("gateway (HTTP → gRPC)", np.asarray(answers), reference, truth))

        full = batched(on_pixels(lambda d: decode_resize(d, size, use_draft=False)), photos)
        opt_in = [_row("opt-in --no-use-draft (full JPEG decode) vs signature", full, reference, truth)]
        enlarged = [_enlarged(d) for d in photos]
        enlarged_signature = batched(on_bytes, enlarged)
        enlarged_full = batched(on_pixels(lambda d: decode_resize(d, size, use_draft=False)), enlarged)
        opt_in.append(
            _row(
                "opt-in --no-use-draft vs signature, photos enlarged 2× (DCT-scaled by the definition)",
                enlarged_full,
                enlarged_signature,
                truth,
            )
        )
        opt_in[-1]["accuracy_signature"] = float((enlarged_signature.argmax(axis=1) == truth).mean())
        rotated = [_rotated(d) for d in photos]
        exif_signature = batched(on_bytes, rotated)
        exif_own = batched(on_pixels(lambda d: decode_resize(d, size)), rotated)
        difference = _row("EXIF-rotated photos: plain TF Serving vs tfic's paths", exif_signature, exif_own, truth)
        difference["accuracy_tfic"] = float((exif_own.argmax(axis=1) == truth).mean())
        before_service = batched(on_pixels(lambda d: service_decode_resize(d, size)), photos)
        before_signature = batched(on_pixels(lambda d: graph_decode_resize(d, size)), photos)
        before = [
            _row("before: service (Pillow draft) vs signature (TF decode)", before_service, before_signature, truth),
        ]
        before[0]["accuracy_signature"] = float((before_signature.argmax(axis=1) == truth).mean())
    return {
        "data": str(data_root),
        "train_images": per_class * len(meta.labels),
        "validation_images": len(photos),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "bound": 1e-4,
        "paths": rows,
        "opt_in": opt_in,
        "plain_tf_serving_difference": difference,
        "before": before,
    }


def report(result: dict[str, Any]) -> str:
    """The docs' table: path, max |Δp| and labels differing between the two sides a row names, accuracy."""
    lines = ["| path | max \\|Δp\\| | labels differing | accuracy |", "|---|---|---|---|"]
    for row in [*result["paths"], *result["opt_in"], result["plain_tf_serving_difference"], *result["before"]]:
        dp = f"{row['max_abs_dp']:.1e}" if "max_abs_dp" in row else "—"
        differing = f"{row['labels_differing']} / {result['validation_images']}" if "labels_differing" in row else "—"
        accuracy = f"{row['accuracy']:.4f}"
        for other in ("recorded_validation_accuracy", "accuracy_tfic", "accuracy_signature"):
            if other in row:
                accuracy += f" ({other.replace('_', ' ')} {row[other]:.4f})"
        lines.append(f"| {row['path']} | {dp} | {differing} | {accuracy} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="clothing-small (train/ and validation/)")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/parity.json"))
    parser.add_argument("--report", type=Path, help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    if not (args.data / "validation").is_dir():
        print(f"skipping the parity benchmark: {args.data}/validation is absent", file=sys.stderr)
        return 0
    result = measure(args.data, args.train_per_class, args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
