"""One preprocessing, bit for bit: every tfic path gives the exported model's own answer.

A small CNN is trained with a validation channel of real photos in every format and colour mode
(tests/tfic/hard_images.py). Training's validation pass, ``tfic evaluate``, ``tfic predict``, the inference
service's Classify and TF Serving Predict, and the gateway must give the same label for every image and
probabilities within ``BOUND`` of the exported ``serving_default`` signature — what plain TensorFlow Serving
computes — except for the EXIF-rotated photo (the signature cannot rotate) and TIFF (TensorFlow cannot
decode it), which are held to tfic's own definition (decode with tfic.imaging, then ``predict_images``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from gateway.settings import GatewaySettings
from tests.conftest import TINY_HP
from tests.gateway.servers import run_gateway, run_inference
from tests.tfic.hard_images import EXIF_ROTATED, NOT_IN_SIGNATURE, hard_images
from tfic.imaging import decode_resize
from tfic.modeldir import read_metadata
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

BOUND = 1e-4
MODEL = "parity"
OWN_DEFINITION_ONLY = (EXIF_ROTATED, *NOT_IN_SIGNATURE)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hard images as a validation channel: class folders digit_0 … digit_9 (every class present)."""
    root = tmp_path_factory.mktemp("parity-photos")
    for i, name in enumerate(sorted(hard_images())):
        folder = root / f"digit_{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(hard_images()[name])
    return root


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path, photos: Path) -> Path:
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.train import Channel, TrainRequest, run

    result = run(
        TrainRequest(
            train=Channel(str(digits_dir)),
            validation=Channel(str(photos)),
            model_base_path=tmp_path_factory.mktemp("parity-models"),
            model_name=MODEL,
            hyperparameters=hyperparameters.parse({**TINY_HP, "image_shape": "3,24,32", "epochs": "3"}),
        )
    )
    assert result.path is not None
    return result.path


@dataclass
class Reference:
    names: list[str]  # file names, in the order of the rows below
    truth: np.ndarray  # class index of each image (its folder)
    signature: np.ndarray  # serving_default on the bytes (NaN rows for OWN_DEFINITION_ONLY)
    own: np.ndarray  # tfic.imaging's pixels through predict_images


@pytest.fixture(scope="module")
def reference(version: Path, photos: Path) -> Reference:
    meta = read_metadata(version)
    loaded = tf.saved_model.load(str(version))
    paths = sorted(photos.glob("*/*"), key=lambda p: p.name)
    data = [p.read_bytes() for p in paths]
    signature = np.full((len(paths), len(meta.labels)), np.nan, np.float32)
    served = [i for i, p in enumerate(paths) if p.name not in OWN_DEFINITION_ONLY]
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([data[i] for i in served]))
    signature[served] = out["probabilities"].numpy()
    pixels = np.stack([decode_resize(d, meta.image_shape[:2]) for d in data]).astype(np.float32)
    own = loaded.signatures["predict_images"](images=tf.constant(pixels))["probabilities"].numpy()
    truth = np.asarray([meta.labels.index(p.parent.name) for p in paths])
    return Reference([p.name for p in paths], truth, signature, own)


def assert_parity(reference: Reference, probabilities: dict[str, np.ndarray], path: str) -> None:
    """Same label as the signature (own definition where it cannot apply) and max |Δp| ≤ BOUND."""
    for i, name in enumerate(reference.names):
        expected = reference.own[i] if name in OWN_DEFINITION_ONLY else reference.signature[i]
        got = probabilities[name]
        assert int(np.argmax(got)) == int(np.argmax(expected)), f"{path}: {name} gets another label"
        delta = float(np.abs(got - expected).max())
        assert delta <= BOUND, f"{path}: {name} differs by {delta:.2e} > {BOUND}"


def test_the_signature_is_the_definition(reference: Reference) -> None:
    assert_parity(reference, dict(zip(reference.names, reference.own, strict=True)), "definition")


def test_the_old_decode_would_fail_the_bound(version: Path, reference: Reference, photos: Path) -> None:
    """The bound can fail: the previous graph decode (fast IDCT, no DCT scaling, tf.image.resize) breaks it."""
    meta = read_metadata(version)
    loaded = tf.saved_model.load(str(version))
    deltas, pixel_deltas = [], []
    for i, name in enumerate(reference.names):
        if name in OWN_DEFINITION_ONLY or not name.endswith(".jpg"):
            continue
        data = next(photos.glob(f"*/{name}")).read_bytes()
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        old = tf.clip_by_value(
            tf.round(tf.image.resize(tf.cast(image, tf.float32), meta.image_shape[:2], antialias=True)), 0, 255
        )
        pixel_deltas.append(float(np.abs(old.numpy() - decode_resize(data, meta.image_shape[:2])).max()))
        probabilities = loaded.signatures["predict_images"](images=old[None])
        deltas.append(float(np.abs(probabilities["probabilities"].numpy()[0] - reference.signature[i]).max()))
    # How far the probabilities move depends on the trained model (the published epoch); the pixels do not.
    assert max(pixel_deltas) >= 2
    assert max(deltas) > BOUND


def test_training_validation_pass_and_evaluate(version: Path, photos: Path, reference: Reference) -> None:
    from trainer_svc.data.loader import load_source, scan
    from trainer_svc.training.evaluate import evaluate
    from trainer_svc.training.hyperparameters import Hyperparameters
    from trainer_svc.training.pipeline import InputSpec, make_dataset

    meta = read_metadata(version)
    source = scan(load_source(str(photos)))
    spec = InputSpec(meta.image_shape, meta.preprocessing.interpolation, source.num_classes)
    predict = tf.saved_model.load(str(version)).signatures["predict_images"]
    rows = [
        predict(images=x)["probabilities"].numpy() for x, _ in make_dataset(source, spec, 4, False, Hyperparameters())
    ]
    names = [Path(s.path).name for s in source.samples if s.path is not None]
    assert len(names) == len(source.samples), "a class-folder source names a file for every sample"
    assert_parity(reference, dict(zip(names, np.concatenate(rows), strict=True)), "training pipeline")

    accuracy = float((reference.own.argmax(axis=1) == reference.truth).mean())
    assert meta.metrics["validation:accuracy"] == pytest.approx(accuracy, abs=1e-7)  # training's own metric
    evaluation = evaluate(version, source)
    assert evaluation.images == len(reference.names) and evaluation.accuracy == pytest.approx(accuracy, abs=1e-12)
    confusion = np.zeros((len(meta.labels),) * 2, np.int64)
    np.add.at(confusion, (reference.truth, reference.own.argmax(axis=1)), 1)
    assert evaluation.confusion_matrix == confusion.tolist()


def test_tfic_predict(version: Path, photos: Path, reference: Reference) -> None:
    from trainer_svc.training.predict import LocalPredictor, list_images, predict_paths

    results = list(predict_paths(LocalPredictor(version), list_images(photos)))
    assert not [r for r in results if "error" in r]
    assert_parity(reference, {Path(r["source"]).name: np.asarray(r["probabilities"]) for r in results}, "predict")


def test_tfic_predict_runs_an_older_definition_through_its_own_signature(
    version: Path, photos: Path, reference: Reference, tmp_path: Path
) -> None:
    """A version exported before the one definition is predicted with the graph decode it was trained on."""
    import json

    from trainer_svc.training.predict import LocalPredictor, predict_paths

    old = tmp_path / "old" / "1"
    shutil.copytree(version, old)
    meta_file = old / "assets.extra" / "tfic.json"
    meta = json.loads(meta_file.read_text())
    del meta["preprocessing"]["definition"]  # as tfic wrote it before the definition was recorded
    meta_file.write_text(json.dumps(meta))
    predictor = LocalPredictor(old)
    assert predictor.legacy
    # The EXIF-rotated photo tells the two ways apart: the signature cannot rotate, tfic's definition does.
    rotated = next(photos.glob(f"*/{EXIF_ROTATED}"))
    (result,) = predict_paths(predictor, [rotated])
    signature = tf.saved_model.load(str(old)).signatures["serving_default"]
    expected = signature(image_bytes=tf.constant([rotated.read_bytes()]))["probabilities"].numpy()[0]
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-6)
    own = reference.own[reference.names.index(EXIF_ROTATED)]
    assert float(np.abs(expected - own).max()) > 1e-3


@pytest.fixture(scope="module")
def served(version: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The inference service and the gateway in front of it: (gRPC target, gateway URL)."""
    base = tmp_path_factory.mktemp("parity-serving")
    shutil.copytree(version, base / MODEL / "1")  # without the trainer's .work directory beside it
    with run_inference(base) as inference:
        settings = GatewaySettings(inference=inference.target, default_model=MODEL)
        with run_gateway(settings) as gateway:
            yield inference.target, gateway.url


def test_inference_service_classify_and_tfserving_predict(
    served: tuple[str, str], photos: Path, reference: Reference
) -> None:
    images = [next(photos.glob(f"*/{name}")).read_bytes() for name in reference.names]
    with grpc.insecure_channel(served[0]) as channel:
        reply = classifier_pb2_grpc.ClassifierStub(channel).Classify(
            classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=images), timeout=60
        )
        classify = {name: np.asarray(r.probabilities) for name, r in zip(reference.names, reply.results, strict=True)}
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "serving_default"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
        predicted = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    probabilities = tf.make_ndarray(predicted.outputs["probabilities"])
    assert_parity(reference, classify, "gRPC Classify")
    assert_parity(reference, dict(zip(reference.names, probabilities, strict=True)), "TF Serving Predict")


def test_gateway(served: tuple[str, str], photos: Path, reference: Reference) -> None:
    import httpx

    headers = {"Content-Type": "application/x-image", "Accept": "application/json;verbose"}
    got = {}
    with httpx.Client(base_url=served[1], timeout=60) as client:
        for name in reference.names:
            response = client.post(
                f"/models/{MODEL}/invocations", content=next(photos.glob(f"*/{name}")).read_bytes(), headers=headers
            )
            assert response.status_code == 200, response.text
            got[name] = np.asarray(response.json()["probabilities"])
    assert_parity(reference, got, "gateway")


@pytest.mark.slow
def test_every_path_on_clothing_small() -> None:
    """The benchmark's measurement on real photos (bench/parity.py), held to the bound: transfer model, 341 photos."""
    from bench.parity import DATA, measure

    if not (DATA / "validation").is_dir():
        pytest.skip(f"clothing-small is absent ({DATA}/validation)")
    result = measure(DATA, per_class=10, epochs=2)
    for row in result["paths"]:
        if "max_abs_dp" in row:
            assert row["max_abs_dp"] <= BOUND and row["labels_differing"] == 0, row
    assert len({row["accuracy"] for row in result["paths"]}) == 1  # training, evaluate, predict, gRPC, gateway
    assert result["paths"][2]["recorded_validation_accuracy"] == pytest.approx(result["paths"][0]["accuracy"])
