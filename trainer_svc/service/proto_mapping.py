"""Protobuf ↔ the job model (`from_pb`/`to_pb`), used only by the gRPC servicer beside it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tfic import version_labels
from tfic.errors import InvalidArgument, InvalidHyperparameter
from tfic.v1 import trainer_pb2 as pb
from trainer_svc.service.jobs import (
    EPOCH,
    MODEL,
    STATE,
    Channel,
    EpochMetrics,
    Job,
    JobEvent,
    JobSpec,
    JobState,
    ModelOutput,
)

STATE_TO_PB: dict[JobState, int] = {
    JobState.PENDING: pb.JOB_STATE_PENDING,
    JobState.IN_PROGRESS: pb.JOB_STATE_IN_PROGRESS,
    JobState.COMPLETED: pb.JOB_STATE_COMPLETED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.STOPPING: pb.JOB_STATE_STOPPING,
    JobState.STOPPED: pb.JOB_STATE_STOPPED,
}
STATE_FROM_PB: dict[int, JobState] = {v: k for k, v in STATE_TO_PB.items()}

FORMAT_FROM_PB: dict[int, str | None] = {
    pb.DATA_FORMAT_UNSPECIFIED: None,
    pb.DATA_FORMAT_FOLDER: "folder",
    pb.DATA_FORMAT_LST: "lst",
    pb.DATA_FORMAT_RECORDIO: "recordio",
    pb.DATA_FORMAT_TFRECORD: "tfrecord",
    pb.DATA_FORMAT_MANIFEST: "manifest",
}
FORMAT_TO_PB: dict[str | None, int] = {v: k for k, v in FORMAT_FROM_PB.items()}

# The typed Hyperparameters fields and the Python type their values have.
TYPED_HYPERPARAMETERS: dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "optimizer": str,
    "validation_split_ratio": float,
    "image_shape": str,
    "num_layers": int,
    "model": str,
    "seed": int,
}


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def state_from_pb(value: int) -> JobState:
    try:
        return STATE_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(f"unknown job state {value}") from None


def states_from_pb(values: Iterable[int]) -> list[JobState]:
    return [state_from_pb(v) for v in values]


def hyperparameters_from_pb(message: pb.Hyperparameters) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(message, name) for name in TYPED_HYPERPARAMETERS if message.HasField(name)}
    for name, value in message.extra.items():
        if name.strip() in values:
            raise InvalidHyperparameter(f"{name.strip()} is given twice (as a typed field and in extra)", name=name)
        values[name] = value
    return values


def hyperparameters_to_pb(values: dict[str, Any]) -> pb.Hyperparameters:
    message = pb.Hyperparameters()
    for name, value in values.items():
        kind = TYPED_HYPERPARAMETERS.get(name)
        if kind is not None and type(value) is kind:
            setattr(message, name, value)
        else:
            message.extra[name] = value if isinstance(value, str) else str(value)
    return message


def spec_from_pb(message: pb.TrainingJobSpec) -> JobSpec:
    channels = []
    for c in message.channels:
        if c.format not in FORMAT_FROM_PB:
            raise InvalidArgument(f"channel {c.name!r}: unknown data format {c.format}")
        names = tuple(c.attribute_names) or None
        channels.append(Channel(c.name, c.uri, FORMAT_FROM_PB[c.format], c.image_root or None, names))
    return JobSpec(
        channels=tuple(channels),
        hyperparameters=hyperparameters_from_pb(message.hyperparameters),
        model_name=message.model_name,
        base_model=message.base_model or None,
        promote=version_labels.check_label(message.promote) if message.promote else "",
    )


def spec_to_pb(spec: JobSpec) -> pb.TrainingJobSpec:
    return pb.TrainingJobSpec(
        channels=[
            pb.InputChannel(
                name=c.name,
                format=FORMAT_TO_PB.get(c.format, 0),  # type: ignore[arg-type]
                uri=c.uri,
                image_root=c.image_root or "",
                attribute_names=list(c.attribute_names or ()),
            )
            for c in spec.channels
        ],
        hyperparameters=hyperparameters_to_pb(spec.hyperparameters),
        base_model=spec.base_model or "",
        model_name=spec.model_name,
        promote=spec.promote,
    )


def metrics_to_pb(metrics: EpochMetrics) -> pb.EpochMetrics:
    return pb.EpochMetrics(
        epoch=metrics.epoch,
        epochs=metrics.epochs,
        values=metrics.values,
        seconds=metrics.seconds,
        images_per_second=metrics.images_per_second,
        phase=metrics.phase,
    )


def output_to_pb(output: ModelOutput) -> pb.ModelOutput:
    message = pb.ModelOutput(
        model_name=output.model_name, version=output.version, path=output.path, metrics=output.metrics
    )
    if output.confusion_matrix is not None:
        labels = [str(label) for label in output.confusion_matrix["labels"]]
        counts = [int(v) for row in output.confusion_matrix["counts"] for v in row]
        message.confusion_matrix.CopyFrom(pb.ConfusionMatrix(labels=labels, counts=counts))
    return message


def job_to_pb(job: Job, tensorboard_dir: Path | None = None) -> pb.TrainingJob:
    message = pb.TrainingJob(
        job_id=job.job_id,
        name=job.name,
        state=STATE_TO_PB[job.state],  # type: ignore[arg-type]
        failure_reason=job.failure_reason,
        spec=spec_to_pb(job.spec),
        create_time=_timestamp(job.create_time),
        start_time=_timestamp(job.start_time),
        end_time=_timestamp(job.end_time),
        attempt=job.attempt,
        tensorboard_dir=str(tensorboard_dir) if tensorboard_dir is not None else "",
    )
    if job.last_metrics is not None:
        message.last_metrics.CopyFrom(metrics_to_pb(job.last_metrics))
    if job.output is not None:
        message.output.CopyFrom(output_to_pb(job.output))
    return message


def event_to_pb(event: JobEvent) -> pb.TrainingEvent:
    message = pb.TrainingEvent(sequence=event.seq, time=_timestamp(event.time))
    if event.type == STATE:
        message.state = STATE_TO_PB[JobState(event.data["state"])]  # type: ignore[assignment]
        message.failure_reason = str(event.data.get("failure_reason", ""))
    elif event.type == EPOCH:
        message.epoch.CopyFrom(metrics_to_pb(EpochMetrics.from_event(event.data)))
    elif event.type == MODEL:
        message.model.CopyFrom(output_to_pb(ModelOutput.from_event(event.data)))
    else:
        message.message = event.describe()
    return message
