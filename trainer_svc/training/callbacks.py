"""Keras callbacks: per-epoch events, a progress bar, checkpoints, best-epoch selection, early stopping, stop."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer_svc.training.events import EventSink

log = logging.getLogger(__name__)


def interrupted(model: keras.Model) -> bool:
    """Whether :class:`StopWhen` ended the current epoch early."""
    return bool(getattr(model, "_tfic_interrupted", False))


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate the optimizer's next step uses, whether it is a number or a schedule."""
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.backend.get_value(lr))


class EpochEvents(keras.callbacks.Callback):  # type: ignore[misc]
    """Emit one ``epoch`` event per epoch with every metric, the phase, the duration and images/s.

    One instance lives for the whole run (its ``history`` spans every phase); each phase sets
    :attr:`phase` and, when the backbone has its own optimizer, :attr:`backbone_optimizer`.
    """

    def __init__(self, sink: EventSink, epochs: int, train_images: int) -> None:
        super().__init__()
        self.sink = sink
        self.epochs = epochs
        self.train_images = train_images
        self.phase = ""
        self.backbone_optimizer: keras.optimizers.Optimizer | None = None
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
            "phase": self.phase,
            "metrics": metrics,
            "seconds": round(seconds, 4),
            "images_per_second": round(self.train_images / seconds, 2) if seconds > 0 else 0.0,
            "learning_rate": current_learning_rate(self.model.optimizer),
        }
        if self.backbone_optimizer is not None:
            event["backbone_learning_rate"] = current_learning_rate(self.backbone_optimizer)
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


@dataclass
class Candidate:
    """An epoch's validation result; epoch 0 is the starting point (the base version, incremental training)."""

    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)

    def score(self, monitor: str = "val_accuracy") -> tuple[float, float]:
        # Accuracy (or binary_mode's eval_metric) is what users and SageMaker's tuning objective judge; the loss
        # breaks ties.
        return (self.metrics.get(monitor, 0.0), -self.metrics.get("val_loss", float("inf")))


class BestEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    """Keep the weights of the best epoch so far (highest validation accuracy, or ``monitor``, then lowest loss).

    The weights are those of ``model`` (the whole classifier), whichever model is being fitted (the
    head alone on cached features shares its layers). With ``state_dir`` the best weights (plain
    arrays: no optimizer, whichever phase's is attached) and their epoch are also kept on disk, so a
    resumed run still publishes the best epoch of the whole run. Only ``writer`` writes there (the
    chief); every worker reads it on resume, as it reads the chief's checkpoints, so all hold the
    same weights when they export together.
    """

    def __init__(
        self,
        model: keras.Model,
        state_dir: Path | None,
        writer: bool = True,
        resumed: bool = False,
        monitor: str = "val_accuracy",
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.classifier = model
        self.state_dir = state_dir
        self.writer = writer
        self.best: Candidate | None = None
        self._weights: list[np.ndarray] | None = None
        if resumed and state_dir is not None and (state_dir / "best.json").is_file():
            self.best = Candidate(**json.loads((state_dir / "best.json").read_text()))

    def offer(self, candidate: Candidate) -> bool:
        if self.best is not None and candidate.score(self.monitor) <= self.best.score(self.monitor):
            return False
        self.best = candidate
        self._weights = [np.copy(w) for w in self.classifier.get_weights()]
        if self.state_dir is not None and self.writer:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Weights first, then the record that names them, each by rename: a crash leaves the old pair.
            tmp = self.state_dir / "weights.tmp.npz"
            np.savez(tmp, *self._weights)
            os.replace(tmp, self.state_dir / "weights.npz")
            record = self.state_dir / "best.json.tmp"
            record.write_text(json.dumps({"epoch": candidate.epoch, "metrics": candidate.metrics}))
            os.replace(record, self.state_dir / "best.json")
        return True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if interrupted(self.model):
            return
        self.offer(Candidate(epoch + 1, {k: float(v) for k, v in (logs or {}).items() if k != "lr"}))

    def restore(self) -> Candidate | None:
        """Put the best weights back into the classifier; returns the epoch they come from."""
        if self.best is None:
            return None
        if self._weights is None and self.state_dir is not None:  # resumed: the best came before the interruption
            with np.load(self.state_dir / "weights.npz") as saved:
                self._weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if self._weights is not None:
            self.classifier.set_weights(self._weights)
        return self.best


class EarlyStop(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop when the validation metric has not improved for ``patience`` epochs; say why.

    The TF algorithm's rule (``tolerance`` None): validation loss must fall by more than ``min_delta``.
    The MXNet algorithm's (``early_stopping_tolerance``): validation accuracy must rise, relative to the
    best so far, by more than ``tolerance`` (``(accuracy - best) / best > tolerance``).
    Epochs count from the start of the phase; none stops before ``min_epochs``. Unlike Keras's
    EarlyStopping this restores nothing: which weights are published is ``export_epoch``'s choice.
    """

    def __init__(
        self,
        sink: EventSink,
        patience: int,
        min_delta: float,
        min_epochs: int,
        first_epoch: int,
        tolerance: float | None = None,
    ) -> None:
        super().__init__()
        self.sink = sink
        self.patience = patience
        self.min_delta = min_delta
        self.min_epochs = min_epochs
        self.first_epoch = first_epoch
        self.tolerance = tolerance
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.stopped_epoch: int | None = None

    def _improves(self, logs: dict[str, Any]) -> tuple[bool, float]:
        if self.tolerance is None:
            loss = float(logs.get("val_loss", float("inf")))
            return self.best is None or loss < self.best - self.min_delta, loss
        accuracy = float(logs.get("val_accuracy", 0.0))
        if self.best is None:
            return True, accuracy
        if self.best <= 0.0:
            return accuracy > 0.0, accuracy
        return (accuracy - self.best) / self.best > self.tolerance, accuracy

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if interrupted(self.model):
            return
        better, value = self._improves(logs or {})
        if better:
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            return
        self.wait += 1
        if self.wait >= self.patience and epoch + 1 - self.first_epoch >= self.min_epochs:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            if self.tolerance is None:
                rule = f"validation loss has not improved by more than {self.min_delta:g}"
            else:
                rule = f"validation accuracy has not improved by more than {self.tolerance:g} of the best (relative)"
            best = float("nan") if self.best is None else self.best
            reason = f"{rule} for {self.patience} epochs (best {best:.4f} at epoch {self.best_epoch})"
            log.info("early stopping after epoch %d: %s", epoch + 1, reason)
            self.sink({"type": "early_stopping", "epoch": epoch + 1, "best_epoch": self.best_epoch, "reason": reason})
