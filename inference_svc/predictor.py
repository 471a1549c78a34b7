"""The transport-free core every API calls: route to a version, decode, batch, answer.

The gRPC servicers (tfic.v1.Classifier and TensorFlow Serving's APIs) convert protobuf to the
plain types here and back; nothing in this module knows about gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference_svc.preprocess import Preprocessor
from inference_svc.repository import ModelRepository, ModelStatus, ServedVersion
from inference_svc.settings import Settings
from tfic.errors import DeadlineExceeded, InvalidArgument
from tfic.modeldir import ModelMetadata


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for; with neither version nor label, the newest AVAILABLE version."""

    name: str
    version: int | None = None
    label: str = ""


@dataclass(frozen=True)
class Prediction:
    model: str
    version: int
    labels: tuple[str, ...]
    probabilities: np.ndarray  # float32 [N, C], columns in label order


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    metadata: ModelMetadata
    path: Path


class Predictor:
    def __init__(self, repository: ModelRepository, preprocessor: Preprocessor, settings: Settings) -> None:
        self.repository = repository
        self.preprocessor = preprocessor
        self._max_images = settings.max_images_per_request

    async def classify(self, ref: ModelRef, images: Sequence[bytes], deadline: float | None = None) -> Prediction:
        """Encoded images (JPEG, PNG, …) → probabilities, decoded and resized as the model expects."""
        self._check_count(len(images))
        with self.repository.acquire(ref.name, ref.version, ref.label) as served:
            meta = _metadata(served)
            height, width, _ = meta.image_shape
            _check_deadline(deadline)
            pixels = await self.preprocessor.decode(images, (height, width), meta.preprocessing.interpolation)
            return await self._run(served, meta, pixels, deadline)

    async def predict_pixels(self, ref: ModelRef, pixels: np.ndarray, deadline: float | None = None) -> Prediction:
        """Already-resized float32 [N, H, W, 3] RGB 0..255 pixels → probabilities."""
        if pixels.ndim != 4:
            raise InvalidArgument(f"images must be a 4-D tensor [N, H, W, 3], got shape {list(pixels.shape)}")
        self._check_count(len(pixels))
        with self.repository.acquire(ref.name, ref.version, ref.label) as served:
            meta = _metadata(served)
            height, width, _ = meta.image_shape
            if pixels.shape[1:] != (height, width, 3):
                raise InvalidArgument(
                    f"images must have shape [N, {height}, {width}, 3] for model {served.model!r} "
                    f"version {served.version}, got {list(pixels.shape)}"
                )
            if not np.isfinite(pixels).all():
                raise InvalidArgument("images contain NaN or infinite values")
            _check_deadline(deadline)
            return await self._run(served, meta, np.ascontiguousarray(pixels, dtype=np.float32), deadline)

    def describe(self, ref: ModelRef) -> VersionInfo:
        """The version a request for ``ref`` would be routed to, with its metadata."""
        with self.repository.acquire(ref.name, ref.version, ref.label) as served:
            return VersionInfo(served.model, served.version, _metadata(served), served.path)

    def models(self) -> list[ModelStatus]:
        return self.repository.models()

    def model(self, name: str) -> ModelStatus:
        return self.repository.model(name)

    def metric_label(self, name: str) -> str:
        return self.repository.metric_label(name)

    async def _run(
        self, served: ServedVersion, meta: ModelMetadata, pixels: np.ndarray, deadline: float | None
    ) -> Prediction:
        assert served.batcher is not None
        probabilities = await served.batcher.submit(pixels, deadline)
        return Prediction(served.model, served.version, meta.labels, probabilities)

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise InvalidArgument("the request holds no images")
        if n > self._max_images:
            raise InvalidArgument(f"the request holds {n} images; the limit is {self._max_images} per request")


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices and probabilities of the ``k`` most probable classes, highest first.

    ``k == 0`` returns every class in label order.
    """
    n, classes = probabilities.shape
    if k < 0:
        raise InvalidArgument(f"top_k must not be negative, got {k}")
    if k == 0:
        return np.broadcast_to(np.arange(classes), (n, classes)), probabilities
    k = min(k, classes)
    # A stable sort on the negated values keeps the label order among ties.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)


def deadline_after(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _metadata(served: ServedVersion) -> ModelMetadata:
    assert served.metadata is not None  # AVAILABLE versions always have metadata
    return served.metadata


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the request's deadline passed before it could run")
