"""Every training run writes TensorBoard event files that TensorBoard's own reader parses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tests.conftest import TINY_HP
from tests.trainer_svc.training.transfer_runs import Trained
from trainer_svc.training import hyperparameters
from trainer_svc.training import tensorboard as tb
from trainer_svc.training.train import Channel, TrainRequest, run, tensorboard_dir_for

SIZE_GUIDANCE = {"scalars": 0, "images": 0, "tensors": 0}  # 0: keep everything


def _accumulate(path: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(path), size_guidance=SIZE_GUIDANCE)
    accumulator.Reload()
    return accumulator


def _scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    """Scalars as TF2's tf.summary writes them: tensors of the scalars plugin."""
    return [(e.step, float(np.asarray(_tensor(e.tensor_proto)))) for e in acc.Tensors(tag)]


def _tensor(proto: Any) -> np.ndarray:
    import tensorflow as tf

    return np.asarray(tf.make_ndarray(proto))


def _image(acc: EventAccumulator, tag: str) -> Image.Image:
    (event,) = acc.Tensors(tag)
    # tf.summary.image stores [width, height, encoded PNG...] as a string tensor.
    width, height, png = _tensor(event.tensor_proto)[:3]
    image = Image.open(io.BytesIO(png))
    assert image.size == (int(width), int(height))
    return image


def test_a_run_writes_scalars_images_and_hparams_tensorboard_reads(tmp_path: Path, digits_dir: Path) -> None:
    events: list[dict[str, Any]] = []
    request = TrainRequest(
        train=Channel(str(digits_dir)),
        model_base_path=tmp_path / "models",
        model_name="m",
        hyperparameters=hyperparameters.parse({**TINY_HP, "epochs": "3"}),
        tensorboard_every_steps=5,
    )
    result = run(request, events.append)
    log_dir = tensorboard_dir_for(request)
    assert log_dir == tmp_path / "models" / ".work" / "m.tensorboard"
    assert result.path is not None and not (tmp_path / "models" / ".work" / "m").exists()  # the work dir goes

    train = _accumulate(log_dir / tb.TRAIN)
    validation = _accumulate(log_dir / tb.VALIDATION)
    tags = set(train.Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss", tb.IMAGES_TAG} <= tags
    assert {"epoch_loss", "epoch_accuracy"} <= set(validation.Tags()["tensors"])

    history = [e for e in events if e["type"] == "epoch"]
    assert [step for step, _ in _scalars(train, "epoch_loss")] == [1, 2, 3]
    np.testing.assert_allclose(
        [v for _, v in _scalars(train, "epoch_loss")], [e["metrics"]["loss"] for e in history], rtol=1e-6
    )
    np.testing.assert_allclose(
        [v for _, v in _scalars(validation, "epoch_accuracy")],
        [e["metrics"]["val_accuracy"] for e in history],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        [v for _, v in _scalars(train, "epoch_learning_rate")], [e["learning_rate"] for e in history], rtol=1e-6
    )
    # 320 training images in batches of 32: 10 steps an epoch, the loss every 5th.
    assert [step for step, _ in _scalars(train, "batch_loss")] == [5, 10, 15, 20, 25, 30]

    grid = _image(train, tb.IMAGES_TAG)
    assert grid.size == (4 * 16, 4 * 16)  # 16 images of 16×16, four by four
    assert len(set(np.asarray(grid).reshape(-1, 3)[:, 0].tolist())) > 2  # digits, not a blank

    root = _accumulate(log_dir)
    confusion = _image(root, tb.CONFUSION_TAG)
    assert min(confusion.size) > 200
    model_event = next(e for e in events if e["type"] == "model")
    counts = np.asarray(model_event["confusion_matrix"]["counts"])
    assert counts.shape == (10, 10) and counts.sum() == 80
    assert np.trace(counts) / 80 == pytest.approx(result.metrics["validation:accuracy"], abs=1e-6)

    (session_start,) = root.Tensors(hparams_metadata.SESSION_START_INFO_TAG) or [None]
    assert session_start is not None
    plugin_data = root.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data
    info = hparams_metadata.parse_session_start_info_plugin_data(plugin_data.content)
    assert info.hparams["epochs"].number_value == 3
    assert info.hparams["model"].string_value == "small_cnn"
    assert info.hparams["batch_size"].number_value == 32


def test_a_new_run_replaces_the_previous_runs_curves(tmp_path: Path, few_digits: Path) -> None:
    request = TrainRequest(
        train=Channel(str(few_digits)),
        model_base_path=tmp_path / "models",
        model_name="m",
        hyperparameters=hyperparameters.parse({**TINY_HP, "epochs": "1"}),
        tensorboard_dir=tmp_path / "board",
    )
    run(request)
    run(request)
    steps = [step for step, _ in _scalars(_accumulate(tmp_path / "board" / tb.TRAIN), "epoch_loss")]
    assert steps == [1]  # the second run replaced the first's curves instead of drawing over them


def test_the_confusion_matrix_of_a_frozen_run_is_its_published_accuracy(frozen_run: Trained) -> None:
    """Head-only epochs on cached features: the matrix comes from the head on those features, not a whole-model
    predict; it must still count what the published model's evaluation measured."""
    model_event = next(e for e in frozen_run.events if e["type"] == "model")
    counts = np.asarray(model_event["confusion_matrix"]["counts"])
    data = next(e for e in frozen_run.events if e["type"] == "data")
    assert counts.shape == (10, 10) and counts.sum() == data["validation_images"]
    assert np.trace(counts) / counts.sum() == pytest.approx(model_event["metrics"]["validation:accuracy"], abs=1e-6)
