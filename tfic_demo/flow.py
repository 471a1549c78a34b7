"""The demo, run against live services: train through the Trainer, classify through the gateway."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfic.errors import FailedPrecondition, Unavailable

ACCEPTS = ("application/json", "application/json;verbose", "application/jsonlines")


@dataclass(frozen=True)
class DemoEndpoints:
    trainer: str
    inference: str
    gateway_url: str
    work: Path
    models: Path
    data_root: Path


def _step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _train(address: str, name: str, data: Path, model_name: str, hp: dict[str, str], base_model: str = "") -> Any:
    """Submit a job, print its epochs as they stream in, and return the finished job."""
    import grpc

    from tfic.v1 import trainer_pb2 as pb
    from tfic.v1 import trainer_pb2_grpc as rpc

    with grpc.insecure_channel(address) as channel:
        stub = rpc.TrainerStub(channel)
        spec = pb.TrainingJobSpec(
            channels=[pb.InputChannel(name="train", format=pb.DATA_FORMAT_FOLDER, uri=str(data))],
            hyperparameters=pb.Hyperparameters(extra=hp),
            base_model=base_model,
            model_name=model_name,
        )
        job = stub.CreateTrainingJob(pb.CreateTrainingJobRequest(name=name, spec=spec, request_id=name))
        print(f"submitted job {job.name} ({job.job_id}) to the Trainer service at {address}", flush=True)
        for event in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job=job.job_id)):
            kind = event.WhichOneof("event")
            if kind == "epoch":
                e = event.epoch
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(e.values.items()))
                phase = f" [{e.phase}]" if e.phase else ""
                print(f"  epoch {e.epoch}/{e.epochs}{phase} {shown} ({e.images_per_second:.0f} img/s)", flush=True)
            elif kind == "state":
                reason = f": {event.failure_reason}" if event.failure_reason else ""
                print(f"  state {pb.JobState.Name(event.state)}{reason}")
        final = stub.GetTrainingJob(pb.GetTrainingJobRequest(job=job.job_id))
    if final.state != pb.JOB_STATE_COMPLETED:
        raise FailedPrecondition(f"job {name} ended {pb.JobState.Name(final.state)}: {final.failure_reason}")
    return final


def _wait_loaded(
    address: str, model: str, version: int, check_alive: Callable[[], object], timeout: float = 180
) -> None:
    import grpc

    from tfic.v1 import classifier_pb2 as cpb
    from tfic.v1 import classifier_pb2_grpc as crpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = crpc.ClassifierStub(channel)
        while time.monotonic() < deadline:
            check_alive()
            try:
                info = stub.GetModel(cpb.GetModelRequest(name=model), timeout=5)
                if any(v.version == version and v.state == cpb.VERSION_STATE_AVAILABLE for v in info.versions):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise Unavailable(f"the inference service did not load {model} version {version} within {timeout:.0f}s")


def _classify_via_gateway(url: str, model: str, images: list[Path]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        for image in images:
            print(f"{image.parent.name}/{image.name}:")
            for accept in ACCEPTS:
                r = client.post(
                    f"/models/{model}/invocations",
                    content=image.read_bytes(),
                    headers={"Content-Type": "application/x-image", "Accept": accept},
                    params={"top_k": "3"},
                )
                print(f"  Accept: {accept:<26} → {r.status_code} {r.text.strip()}")


def _classify_via_grpc(address: str, model: str, images: list[Path]) -> None:
    import grpc

    from tfic.v1 import classifier_pb2 as cpb
    from tfic.v1 import classifier_pb2_grpc as crpc
    from tfic.v1 import common_pb2

    with grpc.insecure_channel(address) as channel:
        reply = crpc.ClassifierStub(channel).Classify(
            cpb.ClassifyRequest(
                model=common_pb2.ModelSpec(name=model), images=[p.read_bytes() for p in images], top_k=1
            ),
            timeout=30,
        )
    for image, result in zip(images, reply.results, strict=True):
        print(f"  {image.parent.name}/{image.name}: {result.predicted_label} "
              f"(p={result.probabilities[0]:.3f}, version {reply.model_version})")  # fmt: skip


def run_demo(ep: DemoEndpoints, epochs: int, transfer_epochs: int, check_alive: Callable[[], object]) -> int:
    from tfic.modeldir import read_metadata
    from tfic_demo.digits import write_digits

    _step("1. the embedded dataset: scikit-learn's handwritten digits as class folders of PNGs")
    data = write_digits(ep.data_root / "digits")
    print(f"{sum(1 for _ in data.rglob('*.png'))} images in 10 class folders under {data}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    _step("2. full training (a small CNN from random weights) through the Trainer service")
    job = _train(
        ep.trainer, f"digits-{stamp}", data, "digits",
        {"model": "small_cnn", "image_shape": "3,32,32", "epochs": str(epochs), "batch_size": "32",
         "learning_rate": "0.003", "label_smoothing": "0.05", "validation_split_ratio": "0.2",
         "early_stopping": "true", "early_stopping_patience": "4"},
    )  # fmt: skip
    version = int(job.output.version)
    accuracy = float(job.output.metrics.get("validation:accuracy", 0.0))
    print(f"published digits version {version} at {job.output.path}: validation accuracy {accuracy:.4f}")

    transfer_accuracy = None
    if transfer_epochs > 0:
        _step("3. transfer learning: EfficientNet-Lite0 (ImageNet weights) with a frozen backbone")
        tjob = _train(
            ep.trainer, f"digits-transfer-{stamp}", data, "digits-transfer",
            # The head trains on the backbone's features computed once, so ten epochs cost about one.
            {"train_only_top_layer": "true", "image_shape": "3,64,64", "epochs": str(transfer_epochs),
             "batch_size": "32"},
            base_model="efficientnet_lite0",
        )  # fmt: skip
        transfer_accuracy = float(tjob.output.metrics.get("validation:accuracy", 0.0))
        print(f"published digits-transfer version {tjob.output.version}: validation accuracy {transfer_accuracy:.4f}")

    _step("4. the inference service hot-loads the new version")
    _wait_loaded(ep.inference, "digits", version, check_alive)
    print(f"digits version {version} is AVAILABLE on {ep.inference}")

    _step("5. evaluate on the whole dataset")
    from trainer_svc.data.loader import load_source, scan
    from trainer_svc.training.evaluate import evaluate, format_report, save_confusion_png

    evaluation = evaluate(ep.models / "digits" / str(version), scan(load_source(str(data))))
    print(format_report(evaluation))
    print(f"confusion matrix: {save_confusion_png(evaluation, ep.work / 'confusion_matrix.png')}")

    samples = [sorted((data / f"digit_{d}").glob("*.png"))[0] for d in (0, 3, 7)]
    _step("6. classify through the gateway (SageMaker's contract), each Accept type, top_k=3")
    _classify_via_gateway(ep.gateway_url, "digits", samples)
    _step("7. classify through gRPC (tfic.v1.Classifier)")
    _classify_via_grpc(ep.inference, "digits", samples)

    meta = read_metadata(ep.models / "digits" / str(version))
    summary = {"model": "digits", "version": version, "validation_accuracy": round(accuracy, 4),
               "evaluation_accuracy": round(evaluation.accuracy, 4), "labels": len(meta.labels)}  # fmt: skip
    if transfer_accuracy is not None:
        summary["transfer_validation_accuracy"] = round(transfer_accuracy, 4)
    import json

    print("\n" + json.dumps(summary), flush=True)
    if accuracy < 0.97:
        print(f"validation accuracy {accuracy:.4f} is below the demo's 0.97 floor", flush=True)
        return 1
    return 0
