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

from inference_svc.batcher import Batcher
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
    labels: tuple[str, ...]  # the label of each column: a binary model's one column is its second label
    probabilities: np.ndarray  # float32 [N, C], columns in label order
    output: str = "multi_class"  # tfic.modeldir.OUTPUTS
    threshold: float = 0.0  # multi_label and binary: the probability at which a label is predicted
    model_labels: tuple[str, ...] = ()  # every label of the model (a binary model's negative one too)


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
            batcher = _batcher(served)
            batcher.announce()  # queued requests may wait (up to the batch timeout) for this one
            try:
                pixels = await self.preprocessor.decode(
                    images, (height, width), meta.preprocessing.interpolation, deadline
                )
            except BaseException:
                batcher.withdraw()
                raise
            return await self._run(served, meta, pixels, deadline, announced=True)

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
        self,
        served: ServedVersion,
        meta: ModelMetadata,
        pixels: np.ndarray,
        deadline: float | None,
        announced: bool = False,
    ) -> Prediction:
        probabilities = await _batcher(served).submit(pixels, deadline, announced)
        threshold = 0.0 if meta.output == "multi_class" else meta.threshold
        return Prediction(
            served.model, served.version, meta.columns, probabilities, meta.output, threshold, meta.labels
        )

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise InvalidArgument("the request holds no images", field="images")
        if n > self._max_images:
            raise InvalidArgument(
                f"the request holds {n} images; the limit is {self._max_images} per request", field="images"
            )


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[list[int], list[float]]]:
    """Per row, the indices and probabilities of the ``k`` most probable classes, highest first.

    ``k == 0`` returns every class in label order. Ties keep label order. Rows are short (one per
    image) and the class count usually small, so plain Python beats numpy's per-call overhead;
    large class counts use a partial sort.
    """
    if k < 0:
        raise InvalidArgument(f"top_k must not be negative, got {k}", field="top_k")
    classes = probabilities.shape[1]
    if k == 0:
        everything = list(range(classes))
        return [(everything, row) for row in probabilities.tolist()]
    k = min(k, classes)
    if classes <= 256:
        ranked = []
        for row in probabilities.tolist():
            order = sorted(range(classes), key=row.__getitem__, reverse=True)[:k]  # stable: ties keep label order
            ranked.append((order, [row[i] for i in order]))
        return ranked
    # Many classes: partial sort, then a stable sort of the k candidates (ties by label index).
    candidates = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    ranked = []
    for row, cand in zip(probabilities, candidates, strict=True):
        order = sorted(cand.tolist(), key=lambda i: (-row[i], i))
        ranked.append((order, [float(row[i]) for i in order]))
    return ranked


def deadline_after(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _metadata(served: ServedVersion) -> ModelMetadata:
    assert served.metadata is not None  # AVAILABLE versions always have metadata
    return served.metadata


def _batcher(served: ServedVersion) -> Batcher:
    assert served.batcher is not None  # AVAILABLE versions always have a batcher
    return served.batcher


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the request's deadline passed before it could run")
