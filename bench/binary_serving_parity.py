"""A binary (``binary_mode``) model served, on real photos: does every path answer as ``tfic predict`` does?

Trains EfficientNet-Lite0's head in binary mode on two clothing-small classes (symlinked subsets, never
copied), then compares, photo by photo of their validation folders, ``tfic predict`` (LocalPredictor +
result_for) with the inference service's Classify and the gateway's verbose JSON: max |Δp|, predicted labels
that differ, and the accuracy of each::

    python -m bench.binary_serving_parity            # ~3 minutes on 2 cores; bench/results/binary_serving_parity.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.parity import DATA

CLASSES = ("hat", "shoes")
MODEL = "hat-or-shoes"


def _subset(root: Path, source: Path, per_class: int) -> Path:
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for photo in sorted((source / name).glob("*.jpg"))[:per_class]:
            (root / name / photo.name).symlink_to(photo)
    return root


def measure(data: Path, per_class: int, epochs: int) -> dict[str, Any]:
    import grpc
    import httpx

    from gateway.settings import GatewaySettings
    from tests.gateway.servers import run_gateway, run_inference
    from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.predict import LocalPredictor, result_for
    from trainer_svc.training.train import Channel, TrainRequest, run

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = _subset(root / "train", data / "train", per_class)
        validation = _subset(root / "validation", data / "validation", 10_000)
        hp = {"train_only_top_layer": "true", "epochs": str(epochs), "binary_mode": "true", "batch_size": "16"}
        start = time.perf_counter()
        result = run(
            TrainRequest(
                train=Channel(str(train)),
                validation=Channel(str(validation)),
                model_base_path=root / "models",
                model_name=MODEL,
                base_model="efficientnet_lite0",
                hyperparameters=hyperparameters.parse(hp),
            )
        )
        assert result.path is not None
        seconds = time.perf_counter() - start
        paths = sorted(validation.rglob("*.jpg"))
        photos = [p.read_bytes() for p in paths]
        truth = [p.parent.name for p in paths]
        predictor = LocalPredictor(result.path)
        meta = predictor.meta
        oracle = [
            result_for(row, meta.labels, 0, meta.output, meta.threshold) for row in predictor.predict_bytes(photos)
        ]
        reference = np.asarray([o["probabilities"][0] for o in oracle])
        answers: dict[str, list[dict[str, Any]]] = {}
        serving = root / "serving" / MODEL / "1"  # the version alone: not the run's .work folder
        shutil.copytree(result.path, serving)
        with run_inference(root / "serving") as inference, grpc.insecure_channel(inference.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            grpc_answers = []
            for i in range(0, len(photos), 16):
                request = classifier_pb2.ClassifyRequest(
                    model=common_pb2.ModelSpec(name=MODEL), images=photos[i : i + 16]
                )
                for r in stub.Classify(request, timeout=120).results:
                    grpc_answers.append({"probabilities": list(r.probabilities), "predicted_label": r.predicted_label})
            answers["inference service Classify (gRPC)"] = grpc_answers
            settings = GatewaySettings(inference=inference.target, default_model=MODEL)
            with run_gateway(settings) as gateway, httpx.Client(base_url=gateway.url, timeout=120) as client:
                headers = {"Content-Type": "application/x-image", "Accept": "application/json;verbose"}
                answers["gateway verbose JSON"] = [
                    client.post(f"/models/{MODEL}/invocations", content=d, headers=headers).json() for d in photos
                ]
    rows = [
        {
            "path": "tfic predict",
            "accuracy": float(np.mean([o["predicted_label"] == t for o, t in zip(oracle, truth, strict=True)])),
        }
    ]
    for name, got in answers.items():
        p = np.asarray([a["probabilities"][0] for a in got])
        rows.append(
            {
                "path": name,
                "max_abs_dp": float(np.abs(p - reference).max()),
                "labels_differing": sum(
                    a["predicted_label"] != o["predicted_label"] for a, o in zip(got, oracle, strict=True)
                ),
                "accuracy": float(np.mean([a["predicted_label"] == t for a, t in zip(got, truth, strict=True)])),
            }
        )
    return {
        "classes": CLASSES,
        "train_per_class": per_class,
        "epochs": epochs,
        "photos": len(paths),
        "train_seconds": round(seconds, 1),
        "threshold": meta.threshold,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/binary_serving_parity.json"))
    args = parser.parse_args(argv)
    result = measure(args.data, args.train_per_class, args.epochs)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
