"""The contract between the batcher and whatever runs the model.

Rules every runtime follows:

* ``predict`` takes float32 or uint8 ``[N, H, W, 3]`` RGB pixels in 0..255, already resized to the
  model's size (the ``predict_images`` signature of :mod:`tfic.modeldir`; uint8 is what decoding
  gives, cast to float32 by the runtime, exactly), and returns float32 ``[N, C]``
  probabilities in label-index order, one row per input row.
* ``predict`` is **blocking** and is called from the batcher's worker threads, never from the event
  loop; up to ``num_batch_threads`` calls may run at once, so it must be thread-safe.
* A runtime is created (and warmed up) in a loader thread and is fully usable when its
  constructor returns. ``close`` is called once, after the last ``predict`` has returned; it must
  not raise.
* Failures raise :class:`tfic.errors.TficError` subclasses when the caller is at fault and any
  other exception otherwise (reported as INTERNAL).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Protocol

import numpy as np

from tfic.modeldir import ModelMetadata


class Runtime(abc.ABC):
    @abc.abstractmethod
    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 or uint8 [N, H, W, 3] → float32 [N, C]; blocking, thread-safe."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model; called once after the last ``predict``."""


class RuntimeFactory(Protocol):
    """Builds the runtime for one model version (called in a loader thread)."""

    def __call__(self, model: str, version: int, path: Path, metadata: ModelMetadata) -> Runtime: ...
