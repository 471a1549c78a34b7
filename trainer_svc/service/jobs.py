"""The job model: states, specs, events. Plain dataclasses; protobuf stays at the gRPC boundary.

States follow SageMaker's training jobs::

    Pending ──> InProgress ──> Completed | Failed
       │             │
       │             └──> Stopping ──> Stopped
       └───────────────────────────────> Stopped

Events are what a job's Watch stream replays: ``state`` and ``message`` events written by the server,
and the training events a worker writes (``start``, ``data``, ``epoch``, ``checkpoint``, ``model``,
``stopped``, ``error``; see :mod:`trainer_svc.training.events`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from trainer_svc.training import events

# A job's TensorBoard event files: <jobs dir>/<job id>/tensorboard, beside its work directory ("work").
TENSORBOARD_DIR = "tensorboard"


class JobState(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED)


ACTIVE_STATES = (JobState.PENDING, JobState.IN_PROGRESS, JobState.STOPPING)

# Event types written by the server; the worker writes the training event types.
STATE = "state"
MESSAGE = "message"
EPOCH = "epoch"
MODEL = "model"
ERROR = "error"
PROMOTED = "promoted"  # a fleet label moved to the published version (the job's promote)

TRAIN_CHANNEL = "train"
VALIDATION_CHANNEL = "validation"


@dataclass(frozen=True)
class Channel:
    name: str  # "train" or "validation"
    uri: str  # a local path or an s3:// URI
    format: str | None = None  # folder, lst, recordio, tfrecord; None infers it from the path
    image_root: str | None = None  # .lst only
    attribute_names: tuple[str, ...] | None = None  # augmented manifests only (SageMaker's AttributeNames)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "uri": self.uri,
            "format": self.format,
            "image_root": self.image_root,
        }
        if self.attribute_names:
            data["attribute_names"] = list(self.attribute_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Channel:
        names = data.get("attribute_names")
        return cls(
            str(data["name"]),
            str(data["uri"]),
            data.get("format"),
            data.get("image_root"),
            tuple(str(n) for n in names) if names else None,
        )


@dataclass(frozen=True)
class JobSpec:
    channels: tuple[Channel, ...]
    # Names → values as the client gave them (typed fields and the string map merged); the worker
    # validates them again with ``hyperparameters.parse``, so what it trains with is what was checked.
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    model_name: str = ""
    base_model: str | None = None
    promote: str = ""  # a fleet version label to point at the published version (tfic.version_labels)

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "channels": [c.to_dict() for c in self.channels],
                "hyperparameters": self.hyperparameters,
                "model_name": self.model_name,
                "base_model": self.base_model,
                "promote": self.promote,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        return cls(
            channels=tuple(Channel.from_dict(c) for c in data["channels"]),
            hyperparameters=dict(data.get("hyperparameters") or {}),
            model_name=str(data.get("model_name") or ""),
            base_model=data.get("base_model"),
            promote=str(data.get("promote") or ""),
        )


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    epochs: int
    values: dict[str, float]
    seconds: float = 0.0
    images_per_second: float = 0.0
    phase: str = ""

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> EpochMetrics:
        return cls(
            epoch=int(data["epoch"]),
            epochs=int(data["epochs"]),
            values={str(k): float(v) for k, v in (data.get("metrics") or data.get("values") or {}).items()},
            seconds=float(data.get("seconds", 0.0)),
            images_per_second=float(data.get("images_per_second", 0.0)),
            phase=str(data.get("phase", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "values": self.values,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "phase": self.phase,
        }


@dataclass(frozen=True)
class ModelOutput:
    model_name: str
    version: int
    path: str
    metrics: dict[str, float] = field(default_factory=dict)
    # {"labels": [...], "counts": [[...], ...]} (rows: true, columns: predicted); None for multi-label models.
    confusion_matrix: dict[str, Any] | None = None

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> ModelOutput:
        metrics = {str(k): float(v) for k, v in (data.get("metrics") or {}).items()}
        confusion = data.get("confusion_matrix")
        return cls(str(data["model_name"]), int(data["version"]), str(data["path"]), metrics, confusion)

    def to_dict(self) -> dict[str, Any]:
        out = {"model_name": self.model_name, "version": self.version, "path": self.path, "metrics": self.metrics}
        if self.confusion_matrix is not None:
            out["confusion_matrix"] = self.confusion_matrix
        return out


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    state: JobState
    spec: JobSpec
    create_time: float
    request_id: str | None = None
    attempt: int = 0  # worker runs started so far; 2 means the job was resumed once
    start_time: float | None = None
    end_time: float | None = None
    failure_reason: str = ""
    last_metrics: EpochMetrics | None = None
    output: ModelOutput | None = None
    worker_pid: int | None = None


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    seq: int  # 1, 2, 3… per job
    time: float
    attempt: int
    type: str
    data: dict[str, Any]

    @property
    def state(self) -> JobState | None:
        return JobState(self.data["state"]) if self.type == STATE else None

    def describe(self) -> str:
        """One line for people (Watch's ``message`` events, ``tfic jobs watch``)."""
        d = self.data
        if self.type == STATE:
            reason = f": {d['failure_reason']}" if d.get("failure_reason") else ""
            return f"state {d['state']}{reason}"
        if self.type == MESSAGE:
            return str(d.get("message", ""))
        if self.type == "start":
            return f"training started (attempt {self.attempt}, model {d.get('model_name', '?')})"
        if self.type == ERROR:
            return f"error: {d.get('message', '')}"
        if self.type == PROMOTED:
            return f"label {d.get('label')} -> version {d.get('version')} ({', '.join(d.get('checks') or [])})"
        return events.describe({"type": self.type, **d})
