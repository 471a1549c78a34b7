"""tfic's transfer recipe end to end on the real EfficientNet-Lite0 weights, at a tiny input size.

Accuracy on real photos is the benchmark's business (bench/transfer_quality.py); these tests check
the mechanics: phases, the feature cache, which epoch is published, and incremental training.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.trainer_svc.training.transfer_runs import FROZEN_HP, RECIPE_HP, Trained
from tests.trainer_svc.training.transfer_runs import run_transfer as _run
from tfic import modeldir
from tfic.errors import Cancelled
from trainer_svc.training import hyperparameters
from trainer_svc.training.model import head_of
from trainer_svc.training.planning import plan
from trainer_svc.training.train import build_model

HP = RECIPE_HP


def _epochs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "epoch"]


def _best(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(epochs, key=lambda e: (e["metrics"]["val_accuracy"], -e["metrics"]["val_loss"]))


def _head_weights(version: Path) -> list[np.ndarray]:
    meta = modeldir.read_metadata(version)
    hp = hyperparameters.parse({"image_shape": "3,32,32"})
    model = build_model(plan(hp, str(version), meta.labels), hp, meta.num_classes)
    return list(head_of(model).get_weights())


def test_default_recipe_warms_the_head_then_fine_tunes_and_publishes_the_best_epoch(recipe_run: Trained) -> None:
    events = list(recipe_run.events)
    epochs = _epochs(events)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert [e["phase"] for e in epochs] == ["head"] * 3 + ["fine_tune"] * 2
    assert {e["epochs"] for e in epochs} == {5}
    (features,) = [e for e in events if e["type"] == "features"]
    assert features["images"] == 120  # computed once for training and validation images together
    tune = epochs[3:]
    assert all("backbone_learning_rate" not in e for e in epochs[:3])
    for e in tune:  # the backbone learns at a tenth of the head's rate, both decaying
        assert e["backbone_learning_rate"] == pytest.approx(e["learning_rate"] * 0.1, rel=1e-5)
    assert tune[1]["learning_rate"] < tune[0]["learning_rate"] < 0.001
    (recipe,) = [e for e in events if e["type"] == "recipe"]
    assert [p["name"] for p in recipe["phases"]] == ["head", "fine_tune"]

    meta = modeldir.read_metadata(recipe_run.path)
    best = _best(epochs)
    assert meta.training["exported_epoch"] == best["epoch"] and meta.training["epochs_run"] == 5
    # The version's metrics are the published epoch's, measured again on the exported weights.
    assert meta.metrics["validation:accuracy"] == pytest.approx(best["metrics"]["val_accuracy"], abs=1e-6)
    assert meta.metrics["validation:loss"] == pytest.approx(best["metrics"]["val_loss"], abs=1e-4)
    assert meta.metrics["train:loss"] == pytest.approx(best["metrics"]["loss"])
    serving = tf.saved_model.load(str(recipe_run.path)).signatures[modeldir.SIGNATURE_IMAGES]
    probabilities = serving(images=tf.zeros([3, 32, 32, 3]))["probabilities"].numpy()
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("which", ["recipe_run", "frozen_run"])
def test_published_versions_carry_no_optimizer_state(which: str, request: pytest.FixtureRequest) -> None:
    """Neither a fine-tuned version nor one whose backbone stayed frozen (its head trained on cached features)."""
    version: Path = request.getfixturevalue(which).path
    names = [name for name, _ in tf.train.list_variables(str(version / "variables" / "variables"))]
    assert any("kernel" in n for n in names)
    assert [n for n in names if "optimizer" in n.lower()] == []


def test_cached_features_train_the_same_head_as_the_full_forward_pass(
    tmp_path: Path, few_digits: Path, frozen_run: Trained
) -> None:
    fast = list(frozen_run.events)  # FROZEN_HP caches the backbone's features (the default when it is frozen)
    slow: list[dict[str, Any]] = []
    uncached = _run(few_digits, tmp_path, "uncached", {**FROZEN_HP, "cache_backbone_features": "false"}, slow)
    assert [e["type"] for e in fast].count("features") == 1 and "features" not in [e["type"] for e in slow]
    assert uncached.path is not None
    for a, b in zip(_head_weights(frozen_run.path), _head_weights(uncached.path), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for f, s in zip(_epochs(fast), _epochs(slow), strict=True):
        assert f["metrics"]["val_accuracy"] == pytest.approx(s["metrics"]["val_accuracy"], abs=1e-6)
        assert f["metrics"]["loss"] == pytest.approx(s["metrics"]["loss"], abs=1e-3)


def _with_optimizer_state(version: Path, learning_rate: float) -> None:
    """Rewrite a version's variables the way earlier tfic versions exported them: optimizer slots included."""
    meta = modeldir.read_metadata(version)
    hp = hyperparameters.parse({"image_shape": "3,32,32"})
    model = build_model(plan(hp, str(version), meta.labels), hp, meta.num_classes)
    trained = model.get_weights()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
    x = np.zeros((2, 32, 32, 3), np.float32)
    model.train_on_batch(x, np.eye(meta.num_classes, dtype=np.float32)[:2])  # creates the slots
    model.set_weights(trained)
    tf.train.Checkpoint(model=model).write(str(version / "variables" / "variables"))
    names = [n for n, _ in tf.train.list_variables(str(version / "variables" / "variables"))]
    assert any("optimizer" in n.lower() for n in names)


def test_incremental_training_starts_from_the_base_and_never_publishes_worse(
    tmp_path: Path, few_digits: Path, frozen_run: Trained
) -> None:
    base = tmp_path / "base" / "1"
    shutil.copytree(frozen_run.path, base)  # a copy: the optimizer state is written into it
    base_accuracy = modeldir.read_metadata(base).metrics["validation:accuracy"]
    _with_optimizer_state(base, learning_rate=0.05)
    events: list[dict[str, Any]] = []
    result = _run(
        few_digits,
        tmp_path,
        "next",
        # A constant rate: an optimizer's restored learning-rate variable would show in the events.
        {"image_shape": "3,32,32", "epochs": "2", "seed": "5", "lr_schedule": "constant"},
        events,
        base_model=str(base),
    )
    (start,) = [e for e in events if e["type"] == "base"]
    assert start["metrics"]["val_accuracy"] == pytest.approx(base_accuracy, abs=1e-6)
    epochs = _epochs(events)
    assert [e["phase"] for e in epochs] == ["fine_tune", "fine_tune"]  # the base's head is kept: no warm-up
    # This run's learning rate, not the one the old export's optimizer state carried.
    assert all(e["learning_rate"] == pytest.approx(0.001) for e in epochs)
    assert result.path is not None
    meta = modeldir.read_metadata(result.path)
    assert meta.metrics["validation:accuracy"] >= base_accuracy
    assert (
        meta.training["exported_epoch"]
        == max(
            [{"epoch": 0, "metrics": start["metrics"]}, *epochs],
            key=lambda e: (e["metrics"]["val_accuracy"], -e["metrics"]["val_loss"]),
        )["epoch"]
    )


def test_a_run_resumed_in_its_fine_tuning_phase_publishes_the_best_epoch_of_the_whole_run(
    tmp_path: Path, few_digits: Path
) -> None:
    work = tmp_path / "work"
    hp = {**HP, "head_epochs": "2", "epochs": "2"}
    first: list[dict[str, Any]] = []

    def after_epoch_three() -> bool:
        return any(e["type"] == "checkpoint" and e["epoch"] == 3 for e in first)

    with pytest.raises(Cancelled):
        _run(few_digits, tmp_path, "r", hp, first, work_dir=work, should_stop=after_epoch_three)
    second: list[dict[str, Any]] = []
    result = _run(few_digits, tmp_path, "r", hp, second, work_dir=work, resume=True)
    assert [e["epoch"] for e in _epochs(second)] == [4]
    assert result.path is not None
    seen = [e for e in _epochs(first) if e["epoch"] <= 3] + _epochs(second)
    assert modeldir.read_metadata(result.path).training["exported_epoch"] == _best(seen)["epoch"]


def test_early_stopping_says_when_and_why(tmp_path: Path, digits_dir: Path) -> None:
    events: list[dict[str, Any]] = []
    hp = {"model": "small_cnn", "image_shape": "3,16,16", "epochs": "6", "early_stopping": "true",
          "early_stopping_patience": "1", "early_stopping_min_delta": "100", "seed": "7"}  # fmt: skip
    result = _run(digits_dir, tmp_path, "es", hp, events, base_model=None)
    (stop,) = [e for e in events if e["type"] == "early_stopping"]
    assert stop["epoch"] == 2 and stop["best_epoch"] == 1
    assert "has not improved by more than 100 for 1 epochs" in stop["reason"]
    assert [e["epoch"] for e in _epochs(events)] == [1, 2]
    assert result.path is not None
    training = modeldir.read_metadata(result.path).training
    assert training["early_stopping_epoch"] == 2 and training["epochs_run"] == 2


def test_a_resumed_run_publishes_a_best_epoch_from_before_the_interruption(tmp_path: Path, few_digits: Path) -> None:
    """A rate of 0.3 wrecks the fine-tune, so the best epoch is in the head phase, before the interruption."""
    work = tmp_path / "work"
    hp = {**HP, "head_epochs": "2", "epochs": "2", "learning_rate": "0.3"}
    first: list[dict[str, Any]] = []

    def after_epoch_three() -> bool:
        return any(e["type"] == "checkpoint" and e["epoch"] == 3 for e in first)

    with pytest.raises(Cancelled):
        _run(few_digits, tmp_path, "r", hp, first, work_dir=work, should_stop=after_epoch_three)
    second: list[dict[str, Any]] = []
    result = _run(few_digits, tmp_path, "r", hp, second, work_dir=work, resume=True)
    seen = [e for e in _epochs(first) if e["epoch"] <= 3] + _epochs(second)
    best = _best(seen)
    assert best["phase"] == "head" and best["metrics"]["val_accuracy"] > _epochs(second)[0]["metrics"]["val_accuracy"]
    assert result.path is not None
    meta = modeldir.read_metadata(result.path)
    assert meta.training["exported_epoch"] == best["epoch"]
    # The weights came back from the work directory: they measure what that epoch measured.
    assert meta.metrics["validation:accuracy"] == pytest.approx(best["metrics"]["val_accuracy"], abs=1e-6)
    assert meta.metrics["train:loss"] == pytest.approx(best["metrics"]["loss"])


def test_early_stopping_tolerance_is_mxnets_relative_rule_on_validation_accuracy() -> None:
    from trainer_svc.training.callbacks import EarlyStop

    events: list[dict[str, Any]] = []
    stop = EarlyStop(events.append, patience=2, min_delta=0.0, min_epochs=0, first_epoch=0, tolerance=0.1)
    stop.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    # 0.50 → 0.56 is +12 % (better); 0.60 is +7 % of 0.56 (not, though absolute +0.04); 0.62 +11 % (better);
    # then two epochs under +10 % of 0.62 stop it, although accuracy still rises and loss falls.
    for epoch, accuracy in enumerate([0.50, 0.56, 0.60, 0.62, 0.66, 0.68]):
        stop.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": 1.0 - accuracy})
        if stop.stopped_epoch is not None:
            break
    assert stop.stopped_epoch == 6 and stop.best_epoch == 4
    (event,) = events
    rule = "validation accuracy has not improved by more than 0.1 of the best (relative) for 2 epochs"
    assert rule in event["reason"]
