"""TensorBoard event files for every training run: scalars, sample images, the confusion matrix, hyperparameters.

The layout ``tensorboard --logdir`` reads (Keras's own TensorBoard callback writes the same two runs)::

    <log dir>/train/       epoch_loss, epoch_accuracy, ... per epoch; batch_loss every ``every_steps`` steps;
                           epoch_learning_rate (and epoch_backbone_learning_rate); the augmented images
    <log dir>/validation/  epoch_loss, epoch_accuracy, ... of the validation data, per epoch
    <log dir>/             the hyperparameters (HParams plugin) and the published weights' confusion matrix

Where the log dir is: ``tfic train`` writes ``<work dir>.tensorboard`` (default
``BASE/.work/NAME.tensorboard``), a Trainer job ``<state dir>/jobs/<job id>/tensorboard``; both outlive the work
directory, which is removed once a version is published. Only the chief of a multi-worker run writes.

Epochs are numbered across the recipe's phases (a head phase then fine-tuning reads as one curve), so a resumed
run continues its curves. What it costs is measured in docs/training.md (TensorBoard).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

log = logging.getLogger(__name__)

DEFAULT_EVERY_STEPS = 50
SAMPLE_IMAGES = 16
TRAIN, VALIDATION = "train", "validation"
IMAGES_TAG = "augmented_training_images"
CONFUSION_TAG = "confusion_matrix"


def log_dir_for_work_dir(work_dir: Path) -> Path:
    """Where ``tfic train`` writes: beside its work directory, which is removed once a version is published."""
    return work_dir.with_name(f"{work_dir.name}.tensorboard")


def hparam_value(value: Any) -> bool | int | float | str:
    """The HParams plugin takes booleans, numbers and strings; anything else is shown as its text."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


class TensorBoardLog:
    """The run's writers. Create on the chief only; :meth:`close` flushes everything."""

    def __init__(self, log_dir: Path, every_steps: int = DEFAULT_EVERY_STEPS) -> None:
        self.log_dir = log_dir
        self.every_steps = every_steps
        log_dir.mkdir(parents=True, exist_ok=True)
        self._root = tf.summary.create_file_writer(str(log_dir))
        self._train = tf.summary.create_file_writer(str(log_dir / TRAIN))
        self._validation = tf.summary.create_file_writer(str(log_dir / VALIDATION))

    def hyperparameters(self, values: dict[str, Any], trial_id: str) -> None:
        from tensorboard.plugins.hparams import api as hp_api

        with self._root.as_default():
            hp_api.hparams({k: hparam_value(v) for k, v in sorted(values.items())}, trial_id=trial_id)
        self._root.flush()

    def event(self, event: dict[str, Any]) -> None:
        """A training event sink: ``epoch`` events (and ``base``, the starting point of incremental training)."""
        kind = event.get("type")
        if kind == "epoch":
            names: tuple[str, ...] = ("learning_rate", "backbone_learning_rate")
            rates = {name: float(event[name]) for name in names if name in event}
            self.epoch(int(event["epoch"]), dict(event.get("metrics") or {}), rates)
        elif kind == "base":
            self.epoch(0, dict(event.get("metrics") or {}), {})

    def epoch(self, epoch: int, metrics: dict[str, float], learning_rates: dict[str, float]) -> None:
        """One epoch's metrics: ``val_x`` in the validation run as ``epoch_x``, the rest in the train run."""
        with self._train.as_default(step=epoch):
            for name, value in metrics.items():
                if not name.startswith("val_"):
                    tf.summary.scalar(f"epoch_{name}", value)
            for name, value in learning_rates.items():
                tf.summary.scalar(f"epoch_{name}", value)
        with self._validation.as_default(step=epoch):
            for name, value in metrics.items():
                if name.startswith("val_"):
                    tf.summary.scalar(f"epoch_{name[4:]}", value)
        # Flushed each epoch so a TensorBoard watching a running job sees it at once; a few ms per epoch.
        self._train.flush()
        self._validation.flush()

    def batch(self, step: int, loss: float) -> None:
        with self._train.as_default(step=step):
            tf.summary.scalar("batch_loss", loss)

    def images(self, pixels: np.ndarray, step: int = 0) -> None:
        """A grid of float32 [N, H, W, 3] pixels in 0..255, as the model sees them."""
        grid = image_grid(pixels)
        with self._train.as_default(step=step):
            tf.summary.image(
                IMAGES_TAG,
                grid[None].astype(np.uint8),
                description="training images after augmentation, as the first phase that decodes them sees them",
            )
        self._train.flush()

    def confusion_matrix(self, counts: np.ndarray, labels: Sequence[str], title: str, step: int) -> None:
        png = confusion_png(counts, labels, title)
        with self._root.as_default(step=step):
            tf.summary.image(
                CONFUSION_TAG,
                tf.image.decode_png(png, channels=3)[None],
                description="the published weights on the validation data (rows: true, columns: predicted)",
            )
        self._root.flush()

    def close(self) -> None:
        for writer in (self._root, self._train, self._validation):
            writer.close()


def image_grid(pixels: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] → one [rows·H, cols·W, 3] image, near-square, unused cells black; values clipped to 0..255."""
    n, h, w, c = pixels.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = pixels[i]
    return np.clip(grid, 0, 255)


def confusion_png(counts: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """The confusion matrix as ``tfic evaluate --confusion-png`` draws it, as PNG bytes."""
    from trainer_svc.training.evaluate import confusion_figure

    buffer = io.BytesIO()
    confusion_figure(counts, labels, title, buffer)
    return buffer.getvalue()


class TensorBoardSteps(keras.callbacks.Callback):  # type: ignore[misc]
    """The training loss every ``every_steps`` steps (the per-epoch scalars come from the ``epoch`` events).

    ``_supports_tf_logs``: Keras then hands the batch logs over as tensors instead of converting every
    batch's to numbers (a device sync per step); only every ``every_steps``-th is read.
    """

    _supports_tf_logs = True

    def __init__(self, board: TensorBoardLog, steps_per_epoch: int) -> None:
        super().__init__()
        self.board = board
        self.steps_per_epoch = steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        every = self.board.every_steps
        step = self._epoch * self.steps_per_epoch + batch + 1
        if every > 0 and step % every == 0 and logs and "loss" in logs:
            self.board.batch(step, float(logs["loss"]))
