"""binary_mode (the TF algorithm's): one sigmoid, SageMaker's one-probability output, eval_metric choosing the epoch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_HP
from tfic import modeldir
from tfic.errors import InvalidDataset, InvalidHyperparameter
from tfic_cli.main import main as tfic
from trainer_svc.data.loader import load_source, scan
from trainer_svc.training import hyperparameters
from trainer_svc.training.evaluate import evaluate
from trainer_svc.training.predict import LocalPredictor, predict_paths
from trainer_svc.training.train import Channel, TrainRequest, run


@pytest.fixture(scope="module")
def zeros_and_sixes(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("binary")
    for name in ("digit_0", "digit_6"):
        shutil.copytree(digits_dir / name, root / name)
    return root


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory: pytest.TempPathFactory, zeros_and_sixes: Path) -> tuple[Path, list[Any]]:
    events: list[Any] = []
    hp = {**TINY_HP, "epochs": "8", "binary_mode": "true", "eval_metric": "auc"}
    request = TrainRequest(
        Channel(str(zeros_and_sixes)), tmp_path_factory.mktemp("models"), "zero-or-six", hyperparameters.parse(hp)
    )
    result = run(request, events.append)
    assert result.path is not None
    return result.path, events


def test_binary_mode_exports_one_probability_of_the_positive_class(
    binary_model: tuple[Path, list[Any]], zeros_and_sixes: Path
) -> None:
    version, events = binary_model
    meta = modeldir.read_metadata(version)
    assert (meta.output, meta.labels, meta.threshold) == ("binary", ("digit_0", "digit_6"), 0.5)
    epochs = [e for e in events if e["type"] == "epoch"]
    assert {"accuracy", "precision", "recall", "auc", "prc", "val_auc", "val_prc"} <= set(epochs[0]["metrics"])
    # The published epoch is the one with the best validation AUC (eval_metric), ties going to the lower loss.
    best = max(epochs, key=lambda e: (e["metrics"]["val_auc"], -e["metrics"]["val_loss"]))
    assert meta.training["exported_epoch"] == best["epoch"]
    assert meta.metrics["validation:auc"] == pytest.approx(best["metrics"]["val_auc"], abs=1e-5)
    loaded = tf.saved_model.load(str(version))
    images = (
        sorted((zeros_and_sixes / "digit_0").glob("*.png"))[:3]
        + sorted((zeros_and_sixes / "digit_6").glob("*.png"))[:3]
    )
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([p.read_bytes() for p in images]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (6, 1)  # SageMaker's binary output: one probability per image
    assert [c.decode() for c in out["classes"].numpy()[:, 0]] == ["digit_6"] * 6
    assert np.all(probabilities[:3, 0] < probabilities[3:, 0].min())  # sixes score above zeros


def test_predict_and_evaluate_cut_at_the_threshold(
    binary_model: tuple[Path, list[Any]], zeros_and_sixes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version, _ = binary_model
    paths = sorted(zeros_and_sixes.rglob("*.png"))
    results = list(predict_paths(LocalPredictor(version), paths))
    for result in results:
        assert result["labels"] == ["digit_6"] and len(result["probabilities"]) == 1
        expected = "digit_6" if result["probabilities"][0] >= 0.5 else "digit_0"
        assert result["predicted_label"] == expected
    evaluation = evaluate(version, scan(load_source(str(zeros_and_sixes))))
    right = np.mean([r["predicted_label"] == Path(r["source"]).parent.name for r in results])
    # 16 steps rank sixes above zeros (AUC) better than they calibrate the 0.5 cut (accuracy).
    assert evaluation.accuracy == pytest.approx(right) and evaluation.accuracy > 0.6
    assert modeldir.read_metadata(version).metrics["validation:auc"] >= 0.9
    assert np.asarray(evaluation.confusion_matrix).sum() == 80
    assert tfic(["predict", str(version), str(paths[0])]) == 0
    assert json.loads(capsys.readouterr().out)["predicted_label"] == results[0]["predicted_label"]


def test_binary_mode_needs_two_classes_and_eval_metric_needs_binary_mode(tmp_path: Path, few_digits: Path) -> None:
    with pytest.raises(InvalidDataset, match=r"binary_mode needs exactly 2 classes .* the data has 10"):
        run(TrainRequest(Channel(str(few_digits)), tmp_path, "b", hyperparameters.parse({"binary_mode": "1"})))
    with pytest.raises(InvalidHyperparameter, match="eval_metric=prc needs binary_mode=true"):
        hyperparameters.parse({"eval_metric": "prc"})
    with pytest.raises(InvalidHyperparameter, match="eval_metric='f1' is not allowed"):
        hyperparameters.parse({"binary_mode": "1", "eval_metric": "f1"})


def test_tflite_export_keeps_the_one_sigmoid(
    binary_model: tuple[Path, list[Any]], zeros_and_sixes: Path, tmp_path: Path
) -> None:
    from trainer_svc.training.edge_export import TFLiteClassifier, export_model

    version, _ = binary_model
    result = export_model(version, tmp_path / "edge")
    predictor = LocalPredictor(version)
    paths = sorted(zeros_and_sixes.rglob("*.png"))[::8]
    pixels = np.stack([predictor.prepare(p.read_bytes()) for p in paths]).astype(np.float32)
    got = TFLiteClassifier(result.model).predict(pixels)
    assert got.shape == (len(paths), 1)
    np.testing.assert_allclose(got, predictor.predict_prepared(list(pixels)), atol=1e-5)
    output = json.loads(result.sidecar.read_text())["output"]
    assert (output["kind"], output["columns"], output["labels"], output["threshold"]) == (
        "binary",
        ["digit_6"],
        ["digit_0", "digit_6"],
        0.5,
    )
