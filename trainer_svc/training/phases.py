"""Fit a run's phases (:mod:`trainer_svc.training.recipe`) one after another on one classifier.

Epochs are numbered across the whole run (a head phase of 10 epochs, then fine-tuning from epoch 11),
so checkpoints, ``--resume``, events and the best-epoch choice see one sequence. Every phase has its
own optimizer(s), created up front so that one checkpoint tracks them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer_svc.data.source import DataSource
from trainer_svc.training import callbacks as cb
from trainer_svc.training import feature_cache
from trainer_svc.training.events import EventSink
from trainer_svc.training.hyperparameters import Hyperparameters
from trainer_svc.training.label_metrics import SUMMARY_KEYS, multi_label_report
from trainer_svc.training.model import features_of
from trainer_svc.training.objectives import loss_for, metrics_for, positive_weights
from trainer_svc.training.optimizers import make_optimizer, schedule
from trainer_svc.training.pipeline import InputSpec, class_weights, make_dataset
from trainer_svc.training.recipe import Phase, Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseOptimizers:
    main: keras.optimizers.Optimizer  # the head's, or the whole network's when backbone is None
    backbone: keras.optimizers.Optimizer | None


def make_optimizers(recipe: Recipe, hp: Hyperparameters, steps_per_epoch: int) -> list[PhaseOptimizers]:
    def rate(phase: Phase, base: float) -> Any:
        return schedule(
            phase.schedule, base, phase.epochs, steps_per_epoch, hp.lr_scheduler_step, hp.lr_scheduler_factor
        )

    out = []
    for phase in recipe.phases:
        backbone = None
        if phase.backbone_learning_rate is not None and not phase.frozen_backbone:
            backbone = make_optimizer(hp, rate(phase, phase.backbone_learning_rate))
        out.append(PhaseOptimizers(make_optimizer(hp, rate(phase, phase.learning_rate)), backbone))
    return out


def tracked_optimizers(optimizers: list[PhaseOptimizers]) -> dict[str, keras.optimizers.Optimizer]:
    tracked = {}
    for i, opts in enumerate(optimizers):
        tracked[f"phase{i}_optimizer"] = opts.main
        if opts.backbone is not None:
            tracked[f"phase{i}_backbone_optimizer"] = opts.backbone
    return tracked


def compile_classifier(
    model: keras.Model,
    hp: Hyperparameters,
    num_classes: int,
    optimizer: keras.optimizers.Optimizer,
    pos_weight: np.ndarray | None = None,
) -> None:
    model.compile(optimizer=optimizer, loss=loss_for(hp, pos_weight), metrics=metrics_for(hp, num_classes))


@dataclass
class PhaseRunner:
    """Everything the phases share: the classifier, its data, the callbacks that span the run."""

    model: keras.Model
    hp: Hyperparameters
    recipe: Recipe
    strategy: tf.distribute.Strategy
    train: DataSource
    validation: DataSource
    spec: InputSpec
    sink: EventSink
    optimizers: list[PhaseOptimizers]
    epoch_events: cb.EpochEvents
    best: cb.BestEpoch | None
    # Callbacks for every phase (checkpoints, cooperative stop, progress), after the events and best-epoch ones.
    shared_callbacks: list[keras.callbacks.Callback]
    spill_dir: Path | None = None
    early_stop: cb.EarlyStop | None = field(default=None, init=False)
    _features: tuple[feature_cache.Features, feature_cache.Features] | None = field(default=None, init=False)
    _val_pixels: tf.data.Dataset | None = field(default=None, init=False)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def pos_weight(self) -> np.ndarray | None:
        """``use_weighted_loss`` for multi-label training: each class's negatives / positives."""
        if self.hp.use_weighted_loss and self.hp.output == "multi_label":
            return positive_weights(self.train)
        return None

    def _compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
        with self.strategy.scope():
            compile_classifier(model, self.hp, self.num_classes, optimizer, self.pos_weight)

    def validation_pixels(self) -> tf.data.Dataset:
        if self._val_pixels is None:
            self._val_pixels = make_dataset(self.validation, self.spec, self.hp.batch_size, training=False, hp=self.hp)
        return self._val_pixels

    def evaluate_start(self) -> None:
        """Incremental training that keeps the head: the base version's own validation result is epoch 0."""
        assert self.best is not None
        self._compile(self.model, self.optimizers[0].main)
        results = self.model.evaluate(self.validation_pixels(), verbose=0, return_dict=True)
        metrics = {f"val_{k}": float(v) for k, v in results.items()}
        self.best.offer(cb.Candidate(0, metrics))
        log.info("base version: validation accuracy %.4f", metrics.get("val_accuracy", 0.0))
        self.sink({"type": "base", "epoch": 0, "metrics": metrics})

    def run(self, initial_epoch: int, stopped: Callable[[], bool]) -> None:
        for index, phase in enumerate(self.recipe.phases):
            first = self.recipe.first_epoch_of(index)
            if initial_epoch >= first + phase.epochs:
                continue
            self._fit(index, phase, first, max(initial_epoch, first))
            if stopped() or (self.early_stop is not None and self.early_stop.stopped_epoch is not None):
                return

    def _fit(self, index: int, phase: Phase, first: int, start: int) -> None:
        hp = self.hp
        features_of(self.model).trainable = not phase.frozen_backbone
        opts = self.optimizers[index]
        fitted: keras.Model
        if phase.cache_features:
            train_features, val_features = self._cached_features()
            with self.strategy.scope():  # a model built outside the scope cannot train mirrored variables
                fitted = feature_cache.head_model(self.model)
            train_ds = train_features.dataset(hp.batch_size, self.spec, shuffle_seed=hp.seed)
            val_ds = val_features.dataset(hp.batch_size, self.spec, shuffle_seed=None)
        else:
            fitted = self.model
            train_ds = make_dataset(
                self.train, self.spec, hp.batch_size, training=True, hp=hp, augmentation=phase.augmentation
            )
            val_ds = self.validation_pixels()
        self.model.set_backbone_optimizer(opts.backbone)
        self._compile(fitted, opts.main)
        self.epoch_events.phase = phase.name
        self.epoch_events.backbone_optimizer = opts.backbone
        callbacks: list[keras.callbacks.Callback] = [self.epoch_events]
        if self.best is not None:
            callbacks.append(self.best)
        if phase.early_stopping:
            self.early_stop = cb.EarlyStop(
                self.sink,
                hp.early_stopping_patience,
                hp.early_stopping_min_delta,
                hp.early_stopping_min_epochs,
                first,
                tolerance=hp.early_stopping_tolerance,
            )
            callbacks.append(self.early_stop)
        callbacks.extend(self.shared_callbacks)
        log.info(
            "phase %s: epochs %d-%d%s",
            phase.name,
            first + 1,
            first + phase.epochs,
            " (cached features)" * phase.cache_features,
        )
        fitted.fit(
            train_ds,
            validation_data=val_ds,
            epochs=first + phase.epochs,
            initial_epoch=start,
            callbacks=callbacks,
            # Multi-class only: multi-label weighting is in the loss (pos_weight), binary in class_weight too.
            class_weight=class_weights(self.train) if hp.use_weighted_loss and hp.output != "multi_label" else None,
            verbose=0,
        )

    def _cached_features(self) -> tuple[feature_cache.Features, feature_cache.Features]:
        if self._features is None:
            with self.strategy.scope():
                extractor = feature_cache.feature_extractor(self.model)
            batch = self.hp.batch_size
            pixels = make_dataset(self.train, self.spec, batch, training=False, hp=self.hp)
            spill = self.spill_dir
            train = feature_cache.extract(extractor, pixels, self.train, self.spec, spill / "train" if spill else None)
            val = feature_cache.extract(
                extractor, self.validation_pixels(), self.validation, self.spec, spill / "validation" if spill else None
            )
            images = len(train.labels) + len(val.labels)
            seconds = train.seconds + val.seconds
            log.info("backbone features of %d images computed once in %.1f s", images, seconds)
            self.sink(
                {
                    "type": "features",
                    "images": images,
                    "seconds": round(seconds, 3),
                    "images_per_second": round(images / seconds, 2) if seconds > 0 else 0.0,
                }
            )
            self._features = (train, val)
        return self._features

    def _multi_label_report(self) -> dict[str, float]:
        """Per-class precision/recall/F1/AP and mAP of the published weights on validation, as a ``report`` event."""
        probabilities, truth = [], []
        for images, targets in self.validation_pixels():
            probabilities.append(np.asarray(self.model.predict_on_batch(images)))
            truth.append(targets.numpy())
        report = multi_label_report(
            np.concatenate(probabilities), np.concatenate(truth), self.train.class_names, self.hp.prediction_threshold
        )
        self.sink({"type": "report", "split": "validation", **report})
        return {f"validation:{k}": float(report[k]) for k in SUMMARY_KEYS}

    def confusion_matrix(self) -> dict[str, Any] | None:
        """The weights in place on the validation data (rows: true, columns: predicted); None for multi-label.

        Every worker predicts (as :meth:`finish` evaluates), so a multi-worker run stays in step.
        """
        if self.hp.output == "multi_label":
            return None
        c = self.num_classes
        counts = np.zeros((c, c), dtype=np.int64)
        for p, y in self._validation_predictions():
            if self.hp.output == "binary":
                truth, predicted = y[:, 0].astype(np.int64), (p[:, 0] >= self.hp.prediction_threshold).astype(np.int64)
            else:
                truth, predicted = y.argmax(axis=1), p.argmax(axis=1)
            np.add.at(counts, (truth, predicted), 1)
        return {"labels": list(self.train.class_names), "counts": counts.tolist()}

    def _validation_predictions(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(probabilities, targets) batches of the validation data under the weights in place.

        When every phase trained the head on cached features, the backbone never changed: its cached features
        are the published weights' own, and the head alone (called eagerly) gives the same probabilities in
        milliseconds, where a whole-model predict would first trace the backbone for seconds.
        """
        if self._features is not None and all(p.cache_features for p in self.recipe.phases):
            _, features = self._features
            head = feature_cache.head_model(self.model)
            batch = 1024
            for start in range(0, len(features.labels), batch):
                values = np.asarray(features.values[start : start + batch], dtype=np.float32)
                labels = features.labels[start : start + batch]
                y = np.eye(self.num_classes)[labels] if self.hp.output == "multi_class" else labels
                yield np.asarray(head(values, training=False)), y
            return
        for images, targets in self.validation_pixels():
            yield np.asarray(self.model.predict_on_batch(images)), targets.numpy()

    def finish(self, initial_epoch: int) -> tuple[dict[str, float], dict[str, Any]]:
        """Put the published epoch's weights in place; its validation metrics and the run's training record."""
        history = self.epoch_events.history
        epochs_run = int(history[-1]["epoch"]) if history else initial_epoch
        exported: int | None = epochs_run or None
        train_metrics: dict[str, float] = dict(history[-1]["metrics"]) if history else {}
        if self.recipe.export_epoch == "best" and self.best is not None:
            chosen = self.best.restore()
            if chosen is not None:
                exported, train_metrics = chosen.epoch, chosen.metrics
                if chosen.epoch == 0:
                    log.warning("no epoch beat the base version on validation; publishing the base version's weights")
        self._compile(self.model, self.optimizers[-1].main)
        results = self.model.evaluate(self.validation_pixels(), verbose=0, return_dict=True)
        metrics = {f"validation:{k}": float(v) for k, v in results.items()}
        if self.hp.output == "multi_label":
            metrics.update(self._multi_label_report())
        metrics.update({f"train:{k}": float(v) for k, v in train_metrics.items() if not k.startswith("val_")})
        stopped_at = self.early_stop.stopped_epoch if self.early_stop is not None else None
        training = {
            "recipe": self.hp.recipe,
            "phases": [{"name": p.name, "epochs": p.epochs} for p in self.recipe.phases],
            "epochs_run": epochs_run,
            "exported_epoch": exported,
            "export_epoch": self.recipe.export_epoch,
            "early_stopping_epoch": stopped_at,
        }
        log.info(
            "publishing epoch %s (%s): validation accuracy %.4f",
            exported,
            self.recipe.export_epoch,
            metrics.get("validation:accuracy", float(np.nan)),
        )
        return metrics, training
