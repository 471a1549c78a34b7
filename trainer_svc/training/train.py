"""One training run, end to end: data → checks → model → fit → evaluate → publish a version.

Used by ``tfic train`` and by the Trainer service's worker processes. Nothing is published
unless the run completes; checkpoints in the work directory let an interrupted run resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfic.errors import Cancelled, FailedPrecondition, InvalidDataset, InvalidHyperparameter
from tfic.modeldir import ModelMetadata, read_metadata, validate_model_name
from trainer_svc.data.loader import load_source, scan, stratified_split
from trainer_svc.data.source import DataSource
from trainer_svc.training import callbacks as cb
from trainer_svc.training.events import EventSink, null_sink
from trainer_svc.training.export import export_version, restore_into, save_serving_model
from trainer_svc.training.hyperparameters import Hyperparameters
from trainer_svc.training.model import build_classifier, features_of
from trainer_svc.training.optimizers import make_optimizer
from trainer_svc.training.pipeline import InputSpec, class_weights, make_dataset
from trainer_svc.training.planning import ModelPlan, plan
from trainer_svc.training.strategy import is_chief, make_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Channel:
    uri: str
    format: str | None = None  # folder, lst, recordio, tfrecord; None infers from the path
    image_root: str | None = None


@dataclass(frozen=True)
class TrainRequest:
    train: Channel
    model_base_path: Path
    model_name: str
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    validation: Channel | None = None
    base_model: str | None = None
    # Weights for a Keras Applications backbone: a local file, "imagenet" (needs the network) or "random".
    base_model_weights: str | None = None
    work_dir: Path | None = None  # checkpoints; default <base>/.work/<name>
    resume: bool = False
    strategy: str = "auto"
    progress: bool = False
    scan_workers: int = 8
    should_stop: Callable[[], bool] | None = None
    keep_work_dir: bool = False


@dataclass
class TrainResult:
    version: int | None
    path: Path | None
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    class_names: tuple[str, ...]
    stopped: bool = False


def work_dir_for(request: TrainRequest) -> Path:
    return request.work_dir or (request.model_base_path / ".work" / request.model_name)


def load_data(request: TrainRequest, sink: EventSink) -> tuple[DataSource, DataSource]:
    hp = request.hyperparameters
    train = scan(
        load_source(request.train.uri, request.train.format, request.train.image_root), workers=request.scan_workers
    )
    if request.validation is not None:
        v = request.validation
        validation = scan(load_source(v.uri, v.format, v.image_root), workers=request.scan_workers)
        if validation.class_names != train.class_names:
            raise InvalidDataset(
                f"validation classes {list(validation.class_names)} differ from "
                f"training classes {list(train.class_names)}"
            )
    else:
        train, validation = stratified_split(train, hp.validation_split_ratio, hp.seed)
    if train.multi_label:
        raise InvalidDataset(
            "this dataset is multi-label (several label columns); multi-label training is not supported yet"
        )
    if hp.num_classes and hp.num_classes != train.num_classes:
        raise InvalidHyperparameter(f"num_classes={hp.num_classes} but the data has {train.num_classes} classes")
    if hp.num_training_samples and hp.num_training_samples != len(train.samples):
        raise InvalidHyperparameter(
            f"num_training_samples={hp.num_training_samples} but the training data has {len(train.samples)} images"
        )
    skipped = [{"key": s.key, "reason": s.reason} for s in (*train.skipped, *validation.skipped)]
    for s in skipped:
        log.warning("skipped %s: %s", s["key"], s["reason"])
    sink(
        {
            "type": "data",
            "classes": list(train.class_names),
            "train_images": len(train.samples),
            "validation_images": len(validation.samples),
            "skipped": skipped,
        }
    )
    return train, validation


def _compile(model: keras.Model, hp: Hyperparameters, num_classes: int, pretrained: bool) -> None:
    k = min(hp.top_k, num_classes)
    fine_tuning = pretrained and not hp.train_only_top_layer
    if fine_tuning and hp.backbone_learning_rate_multiplier < 1.0:
        backbone_hp = dataclasses.replace(hp, learning_rate=hp.learning_rate * hp.backbone_learning_rate_multiplier)
        model.set_backbone_optimizer(make_optimizer(backbone_hp))
    model.compile(
        optimizer=make_optimizer(hp),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=k, name="top_k_accuracy"),
        ],
    )


def build_model(model_plan: ModelPlan, hp: Hyperparameters, num_classes: int) -> keras.Model:
    fine_tune_pretrained = model_plan.pretrained and not hp.train_only_top_layer
    model = build_classifier(
        model_plan.build_features(),
        num_classes,
        model_plan.image_shape,
        model_plan.preprocessing,
        hp.dropout_rate,
        hp.regularizers_l2,
        hp.seed,
        backbone_inference_mode=fine_tune_pretrained or hp.train_only_top_layer,
    )
    if model_plan.restore_from is not None:
        _restore_base(model, model_plan, hp, num_classes)
    if hp.train_only_top_layer:
        features_of(model).trainable = False
    return model


def _restore_base(model: keras.Model, model_plan: ModelPlan, hp: Hyperparameters, num_classes: int) -> None:
    assert model_plan.restore_from is not None
    if model_plan.keep_head:
        restore_into(model, model_plan.restore_from)
        return
    # New head: restore the whole previous classifier, then copy its feature extractor over.
    old_meta = read_metadata(model_plan.restore_from)
    old = build_classifier(
        model_plan.build_features(),
        old_meta.num_classes,
        model_plan.image_shape,
        model_plan.preprocessing,
        hp.dropout_rate,
        hp.regularizers_l2,
        hp.seed,
    )
    restore_into(old, model_plan.restore_from)
    features_of(model).set_weights(features_of(old).get_weights())
    del num_classes


def run(request: TrainRequest, sink: EventSink = null_sink) -> TrainResult:
    hp = request.hyperparameters
    validate_model_name(request.model_name)
    if hp.precision_dtype != "float32":
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if hp.precision_dtype == "float16" else "mixed_bfloat16"
        )
    try:
        return _run(request, hp, sink)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _run(request: TrainRequest, hp: Hyperparameters, sink: EventSink) -> TrainResult:
    # Multi-worker collectives must be set up before anything else touches the TF runtime.
    strategy = make_strategy(request.strategy)
    keras.utils.set_random_seed(hp.seed)
    sink({"type": "start", "hyperparameters": hp.to_dict(), "model_name": request.model_name})
    train, validation = load_data(request, sink)
    model_plan = plan(hp, request.base_model, train.class_names, request.base_model_weights)
    spec = InputSpec(model_plan.image_shape, hp.image_resize_interpolation, train.num_classes)
    batch = hp.batch_size
    train_ds = make_dataset(train, spec, batch, training=True, hp=hp)
    val_ds = make_dataset(validation, spec, batch, training=False, hp=hp)

    with strategy.scope():
        model = build_model(model_plan, hp, train.num_classes)
        _compile(model, hp, train.num_classes, model_plan.pretrained)

    work = work_dir_for(request)
    fingerprint = hashlib.sha256(f"{train.fingerprint()}:{validation.fingerprint()}".encode()).hexdigest()[:16]
    run_info = {"hyperparameters": hp.to_dict(), "fingerprint": fingerprint, "architecture": model_plan.architecture}
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    tracked = {"model": model, "optimizer": model.optimizer, "epoch": epoch_var}
    if getattr(model, "backbone_optimizer", None) is not None:
        tracked["backbone_optimizer"] = model.backbone_optimizer
    checkpoint = tf.train.Checkpoint(**tracked)
    chief = is_chief(strategy)
    ckpt_dir = work / "checkpoints" if chief else Path(tempfile.mkdtemp(prefix="tfic-worker-ckpt-"))
    initial_epoch = _prepare_work_dir(request, work, ckpt_dir, checkpoint, epoch_var, run_info, chief)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=2)

    epoch_events = cb.EpochEvents(sink, hp.epochs, len(train.samples))
    callbacks: list[keras.callbacks.Callback] = [epoch_events]
    if hp.checkpoint_frequency > 0:
        callbacks.append(cb.EpochCheckpoint(manager, epoch_var, hp.checkpoint_frequency, sink))
    if hp.lr_scheduler_step:
        callbacks.append(cb.StepDecay(hp.learning_rate, hp.lr_scheduler_step, hp.lr_scheduler_factor))
    if hp.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=hp.early_stopping_patience,
                min_delta=hp.early_stopping_min_delta,
                start_from_epoch=hp.early_stopping_min_epochs,
                restore_best_weights=True,
            )
        )
    stopper = cb.StopWhen(request.should_stop) if request.should_stop else None
    if stopper:
        callbacks.append(stopper)
    if request.progress:
        callbacks.append(cb.ProgressBar(int(np.ceil(len(train.samples) / batch)), hp.epochs))

    if initial_epoch < hp.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=hp.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            class_weight=class_weights(train) if hp.use_weighted_loss else None,
            verbose=0,
        )
    skipped = [{"key": s.key, "reason": s.reason} for s in (*train.skipped, *validation.skipped)]
    if stopper is not None and stopper.stopped:
        sink({"type": "stopped"})
        raise Cancelled("training was stopped before it finished; no model version was published")

    results = model.evaluate(val_ds, verbose=0, return_dict=True)
    metrics = {f"validation:{k}": float(v) for k, v in results.items()}
    if epoch_events.history:
        metrics.update(
            {f"train:{k}": v for k, v in epoch_events.history[-1]["metrics"].items() if not k.startswith("val_")}
        )
    meta = ModelMetadata(
        labels=train.class_names,
        image_shape=model_plan.image_shape,
        preprocessing=model_plan.preprocessing,
        architecture=model_plan.architecture,
        hyperparameters=hp.to_dict(),
        metrics=metrics,
        dataset_fingerprint=fingerprint,
    )
    if not chief:
        # Non-chief workers must take part in saving (collectives), into a throwaway directory.
        tmp = Path(tempfile.mkdtemp(prefix="tfic-worker-export-"))
        try:
            save_serving_model(tmp, model, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return TrainResult(None, None, metrics, epoch_events.history, skipped, train.class_names)
    version, path = export_version(request.model_base_path, request.model_name, model, meta)
    sink({"type": "model", "model_name": request.model_name, "version": version, "path": str(path), "metrics": metrics})
    if not request.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(version, path, metrics, epoch_events.history, skipped, train.class_names)


def _prepare_work_dir(
    request: TrainRequest,
    work: Path,
    ckpt_dir: Path,
    checkpoint: tf.train.Checkpoint,
    epoch_var: tf.Variable,
    run_info: dict[str, Any],
    chief: bool,
) -> int:
    """Start fresh, or (``resume``) restore the last checkpoint of a compatible earlier run."""
    info_path = work / "run.json"
    # Every worker restores the chief's checkpoint (the work dir is on shared storage in a
    # cluster), so all replicas resume from the same epoch with the same weights.
    latest = tf.train.latest_checkpoint(str(work / "checkpoints"))
    if request.resume and latest:
        previous = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if previous.get("fingerprint") != run_info["fingerprint"]:
            raise FailedPrecondition(f"cannot resume from {work}: the data differs from the interrupted run's")
        if previous.get("hyperparameters") != json.loads(json.dumps(run_info["hyperparameters"])):
            raise FailedPrecondition(
                f"cannot resume from {work}: the hyperparameters differ from the interrupted run's"
            )
        checkpoint.restore(latest).assert_existing_objects_matched()
        log.info("resuming from %s at epoch %d", latest, int(epoch_var.numpy()))
        return int(epoch_var.numpy())
    if request.resume:
        log.warning("--resume: no checkpoint in %s; starting from the beginning", ckpt_dir)
    if chief:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(run_info, indent=2, sort_keys=True))
    return 0
