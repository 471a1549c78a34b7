"""One training run, end to end: data → checks → model → fit → evaluate → publish a version.

Used by ``tfic train`` and by the Trainer service's worker processes. Nothing is published
unless the run completes; checkpoints in the work directory let an interrupted run resume.
"""

from __future__ import annotations

import contextlib
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
from trainer_svc.training import tensorboard as tb
from trainer_svc.training.events import EventSink, fan_out, null_sink
from trainer_svc.training.export import export_version, restore_into, save_serving_model
from trainer_svc.training.hyperparameters import Hyperparameters
from trainer_svc.training.model import build_classifier, features_of
from trainer_svc.training.phases import PhaseRunner, make_optimizers, tracked_optimizers
from trainer_svc.training.pipeline import InputSpec, make_dataset
from trainer_svc.training.planning import ModelPlan, plan
from trainer_svc.training.recipe import Recipe, resolve
from trainer_svc.training.rendezvous import WorkerStartup
from trainer_svc.training.strategy import is_chief, make_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Channel:
    uri: str
    format: str | None = None  # folder, lst, recordio, tfrecord, manifest; None infers from the path
    image_root: str | None = None
    attribute_names: tuple[str, ...] | None = None  # an augmented manifest's (SageMaker's AttributeNames)


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
    worker_startup: WorkerStartup = field(default_factory=WorkerStartup)  # multi-worker runs: waiting for peers
    # TensorBoard event files (trainer_svc.training.tensorboard); default <work dir>.tensorboard. Kept after the run.
    tensorboard: bool = True
    tensorboard_dir: Path | None = None
    tensorboard_every_steps: int = tb.DEFAULT_EVERY_STEPS


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


def tensorboard_dir_for(request: TrainRequest) -> Path:
    return request.tensorboard_dir or tb.log_dir_for_work_dir(work_dir_for(request))


def load_data(request: TrainRequest, sink: EventSink, hp: Hyperparameters) -> tuple[DataSource, DataSource]:
    label_format = hp.label_format if hp.multi_label else "class-id"

    def load(channel: Channel) -> DataSource:
        source = load_source(
            channel.uri,
            channel.format,
            channel.image_root,
            label_format=label_format,
            attribute_names=channel.attribute_names,
        )
        return scan(source, workers=request.scan_workers)

    train = load(request.train)
    # SageMaker's num_training_samples is the training channel's size, before tfic holds any of it out.
    channel_images = len(train.samples)
    if request.validation is not None:
        validation = load(request.validation)
        if validation.class_names != train.class_names:
            raise InvalidDataset(
                f"validation classes {list(validation.class_names)} differ from "
                f"training classes {list(train.class_names)}"
            )
    else:
        train, validation = stratified_split(train, hp.validation_split_ratio, hp.seed)
    if train.multi_label and not hp.multi_label:
        raise InvalidDataset(
            f"{train.description} is multi-label (several labels per image); train it with multi_label=1"
        )
    if hp.binary_mode and train.num_classes != 2:
        raise InvalidDataset(
            f"binary_mode needs exactly 2 classes (the second, {_second(train)}, is the positive one); "
            f"the data has {train.num_classes}: {list(train.class_names)}"
        )
    if hp.num_classes and hp.num_classes != train.num_classes:
        raise InvalidHyperparameter(f"num_classes={hp.num_classes} but the data has {train.num_classes} classes")
    if hp.num_training_samples and hp.num_training_samples != channel_images:
        held_out = (
            f" ({len(train.samples)} train on after validation_split_ratio holds out {len(validation.samples)})"
            if request.validation is None
            else ""
        )
        raise InvalidHyperparameter(
            f"num_training_samples={hp.num_training_samples} but the training channel has {channel_images} "
            f"decodable images{held_out}",
            name="num_training_samples",
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


def _second(source: DataSource) -> str:
    return repr(source.class_names[1]) if source.num_classes > 1 else "index 1"


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
        output=hp.output,
    )
    if model_plan.restore_from is not None:
        _restore_base(model, model_plan, hp)
    if hp.train_only_top_layer:
        features_of(model).trainable = False
    return model


def _restore_base(model: keras.Model, model_plan: ModelPlan, hp: Hyperparameters) -> None:
    """Copy a previous version's weights (all, or the feature extractor's for a new head) into ``model``.

    They are restored into a separate copy first: a checkpoint restored into ``model`` itself would
    also restore, the moment this run's optimizer is attached, whatever optimizer state an older
    export carried (its learning rate included).
    """
    assert model_plan.restore_from is not None
    old_meta = read_metadata(model_plan.restore_from)
    old = build_classifier(
        model_plan.build_features(),
        old_meta.num_classes,
        model_plan.image_shape,
        model_plan.preprocessing,
        hp.dropout_rate,
        hp.regularizers_l2,
        hp.seed,
        output=old_meta.output,
    )
    restore_into(old, model_plan.restore_from)
    if model_plan.keep_head:
        model.set_weights(old.get_weights())
    else:
        features_of(model).set_weights(features_of(old).get_weights())


def run(request: TrainRequest, sink: EventSink = null_sink) -> TrainResult:
    hp = request.hyperparameters
    validate_model_name(request.model_name)
    if hp.precision_dtype != "float32":
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if hp.precision_dtype == "float16" else "mixed_bfloat16"
        )
    try:
        with contextlib.ExitStack() as stack:
            return _run(request, hp, sink, stack)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _run(request: TrainRequest, hp: Hyperparameters, sink: EventSink, stack: contextlib.ExitStack[Any]) -> TrainResult:
    # Multi-worker collectives must be set up before anything else touches the TF runtime.
    strategy = make_strategy(request.strategy, request.worker_startup)
    keras.utils.set_random_seed(hp.seed)
    sink({"type": "start", "hyperparameters": hp.to_dict(), "model_name": request.model_name})
    train, validation = load_data(request, sink, hp)
    model_plan = plan(hp, request.base_model, train.class_names, request.base_model_weights)
    incremental = model_plan.restore_from is not None
    recipe = resolve(
        hp,
        pretrained=model_plan.pretrained,
        new_head=not (incremental and model_plan.keep_head),
        incremental=incremental,
        can_cache=not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
    )
    sink({"type": "recipe", **recipe.to_dict()})
    spec = InputSpec(model_plan.image_shape, hp.image_resize_interpolation, train.num_classes, hp.output)
    steps_per_epoch = int(np.ceil(len(train.samples) / hp.batch_size))

    with strategy.scope():
        model = build_model(model_plan, hp, train.num_classes)
        optimizers = make_optimizers(recipe, hp, steps_per_epoch)

    work = work_dir_for(request)
    fingerprint = hashlib.sha256(f"{train.fingerprint()}:{validation.fingerprint()}".encode()).hexdigest()[:16]
    run_info = {"hyperparameters": hp.to_dict(), "fingerprint": fingerprint, "architecture": model_plan.architecture}
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, epoch=epoch_var, **tracked_optimizers(optimizers))
    chief = is_chief(strategy)
    ckpt_dir = work / "checkpoints" if chief else Path(tempfile.mkdtemp(prefix="tfic-worker-ckpt-"))
    initial_epoch = _prepare_work_dir(request, work, ckpt_dir, checkpoint, epoch_var, run_info, chief)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=2)

    total = recipe.total_epochs
    shared: list[keras.callbacks.Callback] = []
    board = _open_board(request, hp, initial_epoch, chief, work.name)
    run_sink = sink
    if board is not None:
        stack.callback(board.close)
        run_sink = fan_out(sink, board.event)
        board.hyperparameters(hp.to_dict(), trial_id=work.name)
        board.images(_sample_images(train, spec, hp, recipe))
        if board.every_steps > 0:
            shared.append(tb.TensorBoardSteps(board, steps_per_epoch))
    if hp.checkpoint_frequency > 0:
        shared.append(cb.EpochCheckpoint(manager, epoch_var, hp.checkpoint_frequency, sink))
    stopper = cb.StopWhen(request.should_stop) if request.should_stop else None
    if stopper:
        shared.append(stopper)
    if request.progress:
        shared.append(cb.ProgressBar(steps_per_epoch, total))
    best = None
    if recipe.export_epoch == "best":
        best = cb.BestEpoch(
            model, work / "best", writer=chief, resumed=initial_epoch > 0, monitor=f"val_{hp.eval_metric}"
        )
    runner = PhaseRunner(
        model=model,
        hp=hp,
        recipe=recipe,
        strategy=strategy,
        train=train,
        validation=validation,
        spec=spec,
        sink=run_sink,
        optimizers=optimizers,
        epoch_events=cb.EpochEvents(run_sink, total, len(train.samples)),
        best=best,
        shared_callbacks=shared,
        spill_dir=work / "features" if chief else None,
    )
    if recipe.evaluate_base and initial_epoch == 0:
        runner.evaluate_start()
    runner.run(initial_epoch, stopped=lambda: stopper is not None and stopper.stopped)
    skipped = [{"key": s.key, "reason": s.reason} for s in (*train.skipped, *validation.skipped)]
    if stopper is not None and stopper.stopped:
        sink({"type": "stopped"})
        raise Cancelled("training was stopped before it finished; no model version was published")

    metrics, training = runner.finish(initial_epoch)
    confusion = runner.confusion_matrix()
    if board is not None and confusion is not None:
        accuracy = metrics.get("validation:accuracy", float("nan"))
        board.confusion_matrix(
            np.asarray(confusion["counts"]),
            confusion["labels"],
            f"validation accuracy {accuracy:.4f} ({len(validation.samples)} images)",
            int(training["exported_epoch"] or 0),
        )
    meta = ModelMetadata(
        labels=train.class_names,
        image_shape=model_plan.image_shape,
        preprocessing=model_plan.preprocessing,
        architecture=model_plan.architecture,
        hyperparameters=hp.to_dict(),
        metrics=metrics,
        dataset_fingerprint=fingerprint,
        training=training,
        output=hp.output,
        threshold=hp.prediction_threshold,
    )
    history = runner.epoch_events.history
    if not chief:
        # Non-chief workers must take part in saving (collectives), into a throwaway directory.
        tmp = Path(tempfile.mkdtemp(prefix="tfic-worker-export-"))
        try:
            save_serving_model(tmp, model, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return TrainResult(None, None, metrics, history, skipped, train.class_names)
    version, path = export_version(request.model_base_path, request.model_name, model, meta)
    sink(
        {
            "type": "model",
            "model_name": request.model_name,
            "version": version,
            "path": str(path),
            "metrics": metrics,
            "exported_epoch": training["exported_epoch"],
            **({"confusion_matrix": confusion} if confusion is not None else {}),
        }
    )
    if not request.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(version, path, metrics, history, skipped, train.class_names)


def _open_board(
    request: TrainRequest, hp: Hyperparameters, initial_epoch: int, chief: bool, trial: str
) -> tb.TensorBoardLog | None:
    """The chief's TensorBoard writers; a fresh run starts with an empty log dir, a resumed one appends."""
    if not chief or not request.tensorboard:
        return None
    log_dir = tensorboard_dir_for(request)
    if initial_epoch == 0:
        shutil.rmtree(log_dir, ignore_errors=True)
    return tb.TensorBoardLog(log_dir, request.tensorboard_every_steps)


def _sample_images(train: DataSource, spec: InputSpec, hp: Hyperparameters, recipe: Recipe) -> np.ndarray:
    """A seeded handful of training images through the augmentation of the first phase that decodes images
    (phases on cached features see no pixels): what the model is shown."""
    phase = next((p for p in recipe.phases if not p.cache_features), recipe.phases[0])
    rng = np.random.default_rng(hp.seed)
    count = min(tb.SAMPLE_IMAGES, len(train.samples))
    picked = sorted(rng.choice(len(train.samples), count, replace=False).tolist())
    sample = train.with_samples([train.samples[i] for i in picked])
    dataset = make_dataset(sample, spec, count, training=True, hp=hp, augmentation=phase.augmentation)
    pixels, _ = next(iter(dataset))
    return np.asarray(pixels)


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
