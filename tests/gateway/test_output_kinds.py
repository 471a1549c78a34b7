"""Multi-label and binary models served: every path answers as ``tfic predict`` does on the same version.

The oracle is the trainer's own ``LocalPredictor`` + ``result_for`` (what ``tfic predict`` prints): the
gateway's verbose JSON must equal it, and the gRPC answer must carry the same probabilities, threshold and
predicted labels. Before, a binary version failed its warm-up (one column, two labels) and a multi-label
one was served as top-1 only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.servers import IMAGE_SHAPE, encode, run_gateway, run_inference
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

ATTRIBUTES = ("round", "red", "striped", "large")
SIDES = ("negative", "positive")


def _export(base: Path, name: str, labels: tuple[str, ...], output: str, threshold: float, seed: int) -> Path:
    import tf_keras

    from tfic.modeldir import ModelMetadata, Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.export import export_version
    from trainer_svc.training.model import build_classifier

    tf_keras.utils.set_random_seed(seed)  # the backbone's initialisers too: the same sigmoids on every run
    model = build_classifier(
        architectures.small_cnn(IMAGE_SHAPE), len(labels), IMAGE_SHAPE, Preprocessing(), 0.0, 0.0, seed, output=output
    )
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 20.0, bias])  # sharpened, so the sigmoids depend visibly on the pixels
    meta = ModelMetadata(labels=labels, image_shape=IMAGE_SHAPE, output=output, threshold=threshold)
    _, path = export_version(base, name, model, meta)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    base = tmp_path_factory.mktemp("output-kinds")
    _export(base, "attributes", ATTRIBUTES, "multi_label", 0.4, seed=5)
    _export(base, "yes-no", SIDES, "binary", 0.54, seed=6)
    with (
        run_inference(base) as inference,
        run_gateway(GatewaySettings(inference=inference.target, default_model="attributes")) as gateway,
    ):
        yield base, inference.target, gateway.url


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """Noisy images of twelve colours: the untrained models' sigmoids spread around the thresholds."""
    rng = np.random.default_rng(11)
    images = []
    for _ in range(12):
        color = rng.integers(0, 256, 3)
        images.append(encode(np.clip(color + rng.normal(0, 40, (24, 30, 3)), 0, 255).astype(np.uint8), "PNG"))
    return images


def _same(body: dict[str, Any], oracle: dict[str, Any], key: str = "probabilities") -> None:
    """Equal to the oracle: every field exactly, the probabilities to float32 rounding (batches of another size
    run other kernels: the parity bound of bench/parity.py, 1e-6)."""
    assert list(body) == [key, *(k for k in oracle if k != "probabilities")]
    assert body[key] == pytest.approx(oracle["probabilities"], abs=1e-6)
    assert {k: v for k, v in body.items() if k != key} == {k: v for k, v in oracle.items() if k != "probabilities"}


def _oracle(base: Path, model: str, images: list[bytes]) -> list[dict[str, Any]]:
    from trainer_svc.training.predict import LocalPredictor, result_for

    predictor = LocalPredictor(base / model / "1")
    meta = predictor.meta
    rows = predictor.predict_bytes(images)
    return [result_for(row, meta.labels, 0, meta.output, meta.threshold) for row in rows]


def _invoke(url: str, model: str, image: bytes, accept: str) -> httpx.Response:
    response = httpx.post(
        f"{url}/models/{model}/invocations",
        content=image,
        headers={"Content-Type": "application/x-image", "Accept": accept},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def _classify(target: str, model: str, images: list[bytes], top_k: int = 0) -> Any:
    with grpc.insecure_channel(target) as channel:
        request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=model), images=images, top_k=top_k)
        return classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30)


def test_multi_label_verbose_json_is_tfic_predicts_answer(served: tuple[Path, str, str], photos: list[bytes]) -> None:
    base, _, url = served
    expected = _oracle(base, "attributes", photos)
    # The images must exercise the threshold: some with several labels over it, some labels left out.
    counts = [len(e["predicted_labels"]) for e in expected]
    assert max(counts) >= 2 and min(counts) < len(ATTRIBUTES), counts
    for image, oracle in zip(photos, expected, strict=True):
        body = _invoke(url, "attributes", image, "application/json;verbose").json()
        assert list(body) == ["probabilities", "labels", "predicted_label", "predicted_labels", "threshold"]
        _same(body, oracle)
        line = _invoke(url, "attributes", image, "application/jsonlines;verbose").text
        assert line.endswith("\n")
        _same(json.loads(line), oracle, key="prediction")
        plain = _invoke(url, "attributes", image, "application/json").json()
        assert plain == pytest.approx(oracle["probabilities"], abs=1e-6)


def test_multi_label_grpc_lists_every_label_over_the_threshold_whatever_top_k(
    served: tuple[Path, str, str], photos: list[bytes]
) -> None:
    base, target, _ = served
    expected = _oracle(base, "attributes", photos)
    response = _classify(target, "attributes", photos, top_k=1)
    assert (response.output, response.threshold) == ("multi_label", pytest.approx(0.4))
    for result, oracle in zip(response.results, expected, strict=True):
        assert len(result.labels) == 1  # top_k trims what is shown ...
        assert list(result.predicted_labels) == oracle["predicted_labels"]  # ... not what is predicted
        assert result.predicted_label == oracle["predicted_label"] == result.labels[0]


def test_binary_version_loads_and_answers_with_the_positive_probability(
    served: tuple[Path, str, str], photos: list[bytes]
) -> None:
    base, target, url = served
    model = httpx.get(f"{url}/models/yes-no", timeout=30).json()
    (version,) = model["versions"]
    assert version["state"] == "AVAILABLE", version["error"]
    assert (version["output"], version["threshold"], version["labels"]) == ("binary", 0.54, list(SIDES))
    expected = _oracle(base, "yes-no", photos)
    assert {e["predicted_label"] for e in expected} == set(SIDES)  # both sides of the threshold occur
    response = _classify(target, "yes-no", photos)
    assert response.output == "binary"
    for image, result, oracle in zip(photos, response.results, expected, strict=True):
        assert list(result.labels) == ["positive"] and len(result.probabilities) == 1
        assert result.predicted_label == oracle["predicted_label"]
        assert result.predicted_index == SIDES.index(oracle["predicted_label"])
        _same(_invoke(url, "yes-no", image, "application/json;verbose").json(), oracle)
        plain = _invoke(url, "yes-no", image, "application/json").json()
        assert plain == pytest.approx(oracle["probabilities"], abs=1e-6)


def test_tf_serving_predict_on_a_binary_model_matches_its_saved_model(
    served: tuple[Path, str, str], photos: list[bytes]
) -> None:
    """TF Serving's REST Predict returns what the SavedModel's serving_default does: one column."""
    base, _, url = served
    expected = _oracle(base, "yes-no", photos[:3])
    import base64

    body = {"instances": [{"b64": base64.b64encode(p).decode()} for p in photos[:3]]}
    response = httpx.post(f"{url}/v1/models/yes-no:predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["classes"] for p in predictions] == [["positive"]] * 3
    for prediction, oracle in zip(predictions, expected, strict=True):
        assert prediction["probabilities"] == pytest.approx(oracle["probabilities"], abs=1e-6)


def test_tf_serving_metadata_of_a_binary_model_names_one_column(served: tuple[Path, str, str]) -> None:
    _, _, url = served
    response = httpx.get(f"{url}/v1/models/yes-no/metadata", timeout=30)
    assert response.status_code == 200, response.text
    signature = response.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    dims = [int(d["size"]) for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]]
    assert dims == [-1, 1]
