"""What the gateway needs from the inference service, as plain types and one small abstract class.

The HTTP routes and the rendering code see only these; :mod:`gateway.client` implements
:class:`Inference` over gRPC and is the only module that touches protobuf messages.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tfic.errors import FailedPrecondition


@dataclass(frozen=True)
class ModelRef:
    """A model and optionally one version (number) or version label; neither means the latest available."""

    name: str
    version: int | None = None
    label: str = ""


@dataclass(frozen=True)
class Call:
    """Per-request context forwarded to the inference service: the request id and an absolute deadline."""

    request_id: str
    deadline: float  # time.monotonic() seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class Classification:
    """One image's result. With top_k = 0 every class in label-index order, else the K best, highest first."""

    probabilities: Sequence[float]
    labels: Sequence[str]
    label_indices: Sequence[int]
    predicted_label: str
    predicted_index: int
    predicted_labels: Sequence[str] = ()  # multi_label: every label at or over ``threshold``, most probable first
    output: str = "multi_class"  # multi_class, multi_label or binary (one probability, of the second label)
    threshold: float = 0.0  # multi_label and binary


@dataclass(frozen=True)
class Prediction:
    model_name: str
    model_version: int
    results: Sequence[Classification]


@dataclass(frozen=True)
class VersionInfo:
    version: int
    state: str  # LOADING, AVAILABLE, UNLOADING, END, FAILED or UNSPECIFIED
    error: str
    labels: tuple[str, ...]
    input_shape: tuple[int, int, int] | None  # height, width, channels
    version_labels: tuple[str, ...]
    output: str = "multi_class"
    threshold: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: tuple[VersionInfo, ...]

    def available(self) -> list[VersionInfo]:
        return [v for v in self.versions if v.state == "AVAILABLE"]


class Inference(abc.ABC):
    """The inference service as the gateway uses it.

    Rules: every method is a coroutine that runs on the event loop the object was created on and may be
    called concurrently; each honours ``call.deadline`` (raising :class:`tfic.errors.DeadlineExceeded`)
    and forwards ``call.request_id``. Failures are raised as :class:`tfic.errors.TficError` subclasses
    (``ModelNotFound``, ``InvalidImage``, ``ResourceExhausted`` with ``retry_after_seconds``,
    ``Unavailable`` …) so the HTTP layer maps them with the shared table. All calls are idempotent.
    """

    @abc.abstractmethod
    async def classify(self, model: ModelRef, images: Sequence[bytes], top_k: int, call: Call) -> Prediction:
        """One result per image, in order."""

    @abc.abstractmethod
    async def list_models(self, call: Call) -> list[ModelInfo]: ...

    @abc.abstractmethod
    async def get_model(self, name: str, call: Call) -> ModelInfo: ...

    async def unload_model(self, name: str, version: int | None, reason: str, call: Call) -> ModelInfo:
        """Stop serving a model (or one version) without touching its files; the model's state after."""
        raise FailedPrecondition("this inference backend has no model control")

    async def load_model(self, name: str, version: int | None, call: Call) -> ModelInfo:
        """Serve an unloaded model (or version) again; the model's state after."""
        raise FailedPrecondition("this inference backend has no model control")

    @abc.abstractmethod
    async def ready(self, timeout: float) -> bool:
        """Whether the service reports itself ready to classify (never raises)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
