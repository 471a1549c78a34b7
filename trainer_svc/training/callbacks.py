"""Keras callbacks: per-epoch events, a progress bar, checkpoints, cooperative stop."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras

from trainer_svc.training.events import EventSink


def interrupted(model: keras.Model) -> bool:
    """Whether :class:`StopWhen` ended the current epoch early."""
    return bool(getattr(model, "_tfic_interrupted", False))


class EpochEvents(keras.callbacks.Callback):  # type: ignore[misc]
    """Emit one ``epoch`` event per epoch with every metric, the duration and images/s."""

    def __init__(self, sink: EventSink, epochs: int, train_images: int) -> None:
        super().__init__()
        self.sink = sink
        self.epochs = epochs
        self.train_images = train_images
        self._start = 0.0
        self.history: list[dict[str, Any]] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if interrupted(self.model):
            return
        seconds = time.perf_counter() - self._start
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "lr"}
        event = {
            "type": "epoch",
            "epoch": epoch + 1,
            "epochs": self.epochs,
            "metrics": metrics,
            "seconds": round(seconds, 4),
            "images_per_second": round(self.train_images / seconds, 2) if seconds > 0 else 0.0,
            "learning_rate": float(keras.backend.get_value(self.model.optimizer.learning_rate)),
        }
        self.history.append(event)
        self.sink(event)


class ProgressBar(keras.callbacks.Callback):  # type: ignore[misc]
    """A tqdm bar per epoch on stderr, with the epoch's metrics when it closes."""

    def __init__(self, steps_per_epoch: int, epochs: int) -> None:
        super().__init__()
        self.steps = steps_per_epoch
        self.epochs = epochs
        self._bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", file=sys.stderr, leave=True
        )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if logs:
                self._bar.set_postfix(
                    loss=f"{logs.get('loss', 0):.4f}", acc=f"{logs.get('accuracy', 0):.4f}", refresh=False
                )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._bar is not None:
            shown = {
                k: f"{v:.4f}" for k, v in (logs or {}).items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")
            }
            self._bar.set_postfix(shown)
            self._bar.close()
            self._bar = None


class EpochCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Save model + optimizer + epoch every ``frequency`` epochs (what ``--resume`` restores)."""

    def __init__(
        self, manager: tf.train.CheckpointManager, epoch_var: tf.Variable, frequency: int, sink: EventSink
    ) -> None:
        super().__init__()
        self.manager = manager
        self.epoch_var = epoch_var
        self.frequency = frequency
        self.sink = sink

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # A stop inside an epoch leaves it half done: keep the previous checkpoint instead.
        if interrupted(self.model):
            return
        if self.frequency > 0 and (epoch + 1) % self.frequency == 0:
            self.epoch_var.assign(epoch + 1)
            path = self.manager.save(checkpoint_number=epoch + 1)
            self.sink({"type": "checkpoint", "epoch": epoch + 1, "path": str(Path(path))})


class StopWhen(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop cooperatively (at a batch boundary) when ``should_stop()`` turns true."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self.should_stop = should_stop
        self.stopped = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.should_stop():
            self.stopped = True
            self.model.stop_training = True
            self.model._tfic_interrupted = True


class StepDecay(keras.callbacks.Callback):  # type: ignore[misc]
    """MXNet's lr_scheduler_step/factor: multiply the learning rate at the listed epochs."""

    def __init__(self, base_lr: float, steps: tuple[int, ...], factor: float) -> None:
        super().__init__()
        self.base_lr = base_lr
        self.steps = steps
        self.factor = factor

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        passed = sum(1 for s in self.steps if epoch >= s)
        keras.backend.set_value(self.model.optimizer.learning_rate, self.base_lr * self.factor**passed)
