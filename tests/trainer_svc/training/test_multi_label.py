"""Multi-label training (MXNet's multi_label=1) end to end on real images: the digits, labelled by attributes.

Each digit image carries the attributes of its digit (small/big, even, has a loop): a real multi-label
task whose labels the pixels determine, so a model that learns shows it in its average precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TINY_HP
from tfic import modeldir
from tfic.errors import IncompatibleModel, InvalidArgument, InvalidDataset
from tfic.imaging import decode_resize
from tfic_cli.main import main as tfic
from trainer_svc.data.loader import load_source, scan
from trainer_svc.data.recordio import RecordIOWriter, pack_image
from trainer_svc.training import hyperparameters
from trainer_svc.training.evaluate import MultiLabelEvaluation, evaluate, evaluate_model
from trainer_svc.training.label_metrics import average_precision
from trainer_svc.training.objectives import positive_weights
from trainer_svc.training.predict import LocalPredictor, predict_paths
from trainer_svc.training.train import Channel, TrainRequest, run

ATTRIBUTES = {"small": {0, 1, 2, 3, 4}, "big": {5, 6, 7, 8, 9}, "even": {0, 2, 4, 6, 8}, "loop": {0, 6, 8, 9}}
NAMES = tuple(ATTRIBUTES)


def _digit(path: Path) -> int:
    return int(path.parent.name.split("_")[1])


def _attributes(digit: int) -> tuple[int, ...]:
    return tuple(i for i, members in enumerate(ATTRIBUTES.values()) if digit in members)


def _write_lst(images: Path, lst: Path, multi_hot: bool) -> Path:
    rows = []
    for i, path in enumerate(sorted(images.rglob("*.png"))):
        ids = _attributes(_digit(path))
        values = [int(c in ids) for c in range(len(NAMES))] if multi_hot else list(ids)
        rows.append("\t".join([str(i), *map(str, values), str(path.relative_to(images))]))
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("\n".join(rows) + "\n")
    (lst.parent / "labels.json").write_text(json.dumps({"labels": list(NAMES)}))
    return lst


@pytest.fixture(scope="module")
def attribute_model(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> tuple[Path, Path, list[Any]]:
    """A multi-label small CNN trained on a multi-hot .lst of the 400 digits: (version dir, the .lst, events)."""
    root = tmp_path_factory.mktemp("multi-label")
    lst = _write_lst(digits_dir, root / "lists" / "attributes.lst", multi_hot=True)
    events: list[Any] = []
    hp = {**TINY_HP, "epochs": "3", "multi_label": "1", "label_smoothing": "0"}
    result = run(
        TrainRequest(
            train=Channel(str(lst), image_root=str(digits_dir)),
            model_base_path=root / "models",
            model_name="attributes",
            hyperparameters=hyperparameters.parse(hp),
        ),
        events.append,
    )
    assert result.path is not None
    return result.path, lst, events


def test_multi_hot_lst_trains_one_sigmoid_per_label_and_reports_per_class(
    attribute_model: tuple[Path, Path, list[Any]],
) -> None:
    version, _, events = attribute_model
    meta = modeldir.read_metadata(version)
    assert (meta.output, meta.threshold, meta.labels, meta.multi_label) == ("multi_label", 0.5, NAMES, True)
    epoch = next(e for e in events if e["type"] == "epoch")
    assert {"loss", "accuracy", "precision", "recall", "val_accuracy"} <= set(epoch["metrics"])
    (report,) = [e for e in events if e["type"] == "report"]
    assert set(report["per_class"]) == set(NAMES) and report["images"] == 80
    assert set(report["per_class"]["loop"]) == {"precision", "recall", "f1", "support", "average_precision"}
    # Chance is each label's frequency (0.4-0.5); three epochs of a small CNN learn the attributes.
    assert report["mean_average_precision"] > 0.75
    assert meta.metrics["validation:mean_average_precision"] == pytest.approx(report["mean_average_precision"])
    assert meta.metrics["validation:label_accuracy"] == pytest.approx(meta.metrics["validation:accuracy"], abs=1e-6)


def test_serving_default_returns_independent_sigmoid_probabilities(
    attribute_model: tuple[Path, Path, list[Any]], digits_dir: Path
) -> None:
    version, _, _ = attribute_model
    loaded = tf.saved_model.load(str(version))
    paths = sorted(digits_dir.rglob("*.png"))[::40]
    data = [p.read_bytes() for p in paths]
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(data))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (len(paths), len(NAMES))
    assert [c.decode() for c in out["classes"].numpy()[0]] == list(NAMES)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert np.abs(probabilities.sum(axis=1) - 1).max() > 0.1  # sigmoids, not a softmax
    pixels = np.stack([decode_resize(d, (16, 16)) for d in data]).astype(np.float32)
    images = loaded.signatures["predict_images"](images=tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(images, probabilities, atol=1e-6)


def test_predict_returns_every_label_over_the_threshold(
    attribute_model: tuple[Path, Path, list[Any]], digits_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version, _, _ = attribute_model
    paths = sorted(digits_dir.rglob("*.png"))[::20]
    results = list(predict_paths(LocalPredictor(version), paths))
    for result in results:
        over = [n for n, p in zip(result["labels"], result["probabilities"], strict=True) if p >= 0.5]
        assert sorted(result["predicted_labels"]) == sorted(over) and result["threshold"] == 0.5
        ordered = [result["probabilities"][result["labels"].index(n)] for n in result["predicted_labels"]]
        assert ordered == sorted(ordered, reverse=True)
    # The exact set of a digit's attributes, far more often than a guess at 4 labels would (1 in 16).
    truth = [{NAMES[i] for i in _attributes(_digit(p))} for p in paths]
    exact = [set(r["predicted_labels"]) == t for r, t in zip(results, truth, strict=True)]
    assert np.mean(exact) >= 0.2
    assert tfic(["predict", str(version), str(paths[0])]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["predicted_labels"] == results[0]["predicted_labels"]


def test_evaluate_reports_per_class_metrics_and_map(
    attribute_model: tuple[Path, Path, list[Any]], digits_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version, lst, _ = attribute_model
    source = scan(load_source(str(lst), image_root=str(digits_dir), check_classes=False, label_format="auto"))
    result = evaluate_model(version, source)
    assert isinstance(result, MultiLabelEvaluation) and result.images == 400
    assert result.report["mean_average_precision"] > 0.75
    with pytest.raises(InvalidArgument, match="multi-label model"):
        evaluate(version, source)
    assert tfic(["evaluate", str(version), str(lst), "--image-root", str(digits_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["output"] == "multi_label"
    assert printed["mean_average_precision"] == pytest.approx(result.report["mean_average_precision"])
    assert set(printed["per_class"]) == set(NAMES)
    assert tfic(["evaluate", str(version), str(lst), "--image-root", str(digits_dir)]) == 0
    assert "mAP" in capsys.readouterr().out


def test_recordio_class_ids_with_mxnets_weighted_loss(tmp_path: Path, few_digits: Path) -> None:
    """RecordIO records with flag > 0 labels (class ids here), use_weighted_loss weighting each label's positives."""
    rec = tmp_path / "data" / "attributes.rec"
    rec.parent.mkdir()
    with RecordIOWriter(rec) as writer:
        for i, path in enumerate(sorted(few_digits.rglob("*.png"))):
            writer.write(pack_image(path.read_bytes(), [float(c) for c in _attributes(_digit(path))], id=i), key=i)
    (rec.parent / "labels.json").write_text(json.dumps({"labels": list(NAMES)}))
    source = load_source(str(rec), label_format="auto")
    assert source.multi_label and source.class_names == NAMES
    # 120 images: 60 small, 60 big, 60 even, 48 with a loop (digits 0, 6, 8, 9).
    np.testing.assert_allclose(positive_weights(source), [1.0, 1.0, 1.0, 72 / 48])
    events: list[Any] = []
    hp = {**TINY_HP, "epochs": "1", "multi_label": "1", "label_format": "class-id", "use_weighted_loss": "1"}
    request = TrainRequest(Channel(str(rec)), tmp_path / "models", "rec", hyperparameters.parse(hp))
    result = run(request, events.append)
    assert result.path is not None and modeldir.read_metadata(result.path).output == "multi_label"
    assert np.isfinite(next(e for e in events if e["type"] == "epoch")["metrics"]["loss"])


def test_multi_label_data_needs_multi_label_training_and_a_matching_base(
    tmp_path: Path, few_digits: Path, attribute_model: tuple[Path, Path, list[Any]], trained_model: Path
) -> None:
    lst = _write_lst(few_digits, tmp_path / "lists" / "a.lst", multi_hot=False)
    hp = hyperparameters.parse({**TINY_HP, "epochs": "1"})
    with pytest.raises(InvalidDataset, match=r"is multi-label .* train it with multi_label=1"):
        run(TrainRequest(Channel(str(lst), image_root=str(few_digits)), tmp_path / "m", "x", hp))
    # A multi-class version cannot lend its head to a multi-label run of the same classes.
    version, _, _ = attribute_model
    multi = hyperparameters.parse({**TINY_HP, "epochs": "1", "multi_label": "1"})
    with pytest.raises(IncompatibleModel, match="is multi-class, this run trains multi-label"):
        run(TrainRequest(Channel(str(few_digits)), tmp_path / "m", "y", multi, base_model=str(trained_model)))
    source = scan(load_source(str(few_digits)))
    with pytest.raises(InvalidDataset, match="the data has classes the model does not know"):
        evaluate_model(version, source)


def test_average_precision_is_scikit_learns() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.random(50) < 0.3
        scores = np.round(rng.random(50), 1)  # ties
        assert average_precision(scores, truth) == pytest.approx(average_precision_score(truth, scores))
    assert np.isnan(average_precision(np.ones(3), np.zeros(3, dtype=bool)))


def test_metadata_without_an_output_kind_still_loads_as_multi_class(trained_model: Path, tmp_path: Path) -> None:
    data = json.loads((trained_model / "assets.extra" / "tfic.json").read_text())
    for key in ("output", "threshold"):
        data.pop(key)
    old = modeldir.ModelMetadata.from_dict(data)
    assert (old.output, old.threshold, old.multi_label) == ("multi_class", 0.5, False)
    with pytest.raises(InvalidArgument, match="unknown output kind 'regression'"):
        modeldir.ModelMetadata.from_dict({**data, "output": "regression"})


def test_tflite_export_keeps_one_sigmoid_per_label(
    attribute_model: tuple[Path, Path, list[Any]], digits_dir: Path, tmp_path: Path
) -> None:
    from trainer_svc.training.edge_export import TFLiteClassifier, export_model

    version, _, _ = attribute_model
    result = export_model(version, tmp_path / "edge")
    predictor = LocalPredictor(version)
    paths = sorted(digits_dir.rglob("*.png"))[::9]
    pixels = np.stack([predictor.prepare(p.read_bytes()) for p in paths]).astype(np.float32)
    got = TFLiteClassifier(result.model).predict(pixels)
    np.testing.assert_allclose(got, predictor.predict_prepared(list(pixels)), atol=1e-5)
    assert got.shape == (len(paths), len(NAMES))
    assert not np.allclose(got.sum(axis=1), 1.0)  # independent sigmoids, not a softmax
    output = json.loads(result.sidecar.read_text())["output"]
    assert (output["kind"], output["columns"], output["threshold"]) == ("multi_label", list(NAMES), 0.5)
