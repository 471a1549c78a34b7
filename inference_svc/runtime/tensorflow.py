"""In-process TensorFlow: load the SavedModel and call its ``predict_images`` signature.

TensorFlow releases the GIL while ops run and executes concurrent calls of one function safely,
so ``predict`` needs no lock. Process-wide settings (threads, GPU memory growth) are applied once
by :func:`configure` before the first model loads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference_svc.runtime.base import Runtime
from tfic import modeldir
from tfic.errors import IncompatibleModel
from tfic.modeldir import ModelMetadata

log = logging.getLogger(__name__)

_configured = threading.Lock()
_done = False


@dataclass(frozen=True)
class TensorFlowOptions:
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    xla: bool = False


def configure(options: TensorFlowOptions) -> list[str]:
    """Thread pools and GPU memory growth; only the first call in a process has an effect.

    Returns the GPUs TensorFlow sees. On a CPU the defaults (one intra-op pool the size of the
    machine, shared by concurrent batches) are usually best; see docs/inference.md.
    """
    global _done
    import tensorflow as tf

    with _configured:
        gpus = tf.config.list_physical_devices("GPU")
        if _done:
            return [g.name for g in gpus]
        _done = True
        try:
            if options.intra_op_threads:
                tf.config.threading.set_intra_op_parallelism_threads(options.intra_op_threads)
            if options.inter_op_threads:
                tf.config.threading.set_inter_op_parallelism_threads(options.inter_op_threads)
        except RuntimeError as exc:  # the runtime was initialised earlier in this process
            log.warning("TensorFlow thread settings not applied: %s", exc)
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError as exc:
                log.warning("GPU memory growth not enabled on %s: %s", gpu.name, exc)
        log.info(
            "TensorFlow %s on %s",
            tf.__version__,
            ", ".join(g.name for g in gpus) if gpus else "CPU",
        )
        return [g.name for g in gpus]


class TensorFlowRuntime(Runtime):
    def __init__(self, path: Path, metadata: ModelMetadata, options: TensorFlowOptions = TensorFlowOptions()) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded: Any = tf.saved_model.load(str(path))
        signatures = getattr(self._loaded, "signatures", {})
        if modeldir.SIGNATURE_IMAGES not in signatures:
            raise IncompatibleModel(
                f"{path} has no {modeldir.SIGNATURE_IMAGES!r} signature (has: {', '.join(signatures) or 'none'})"
            )
        signature = signatures[modeldir.SIGNATURE_IMAGES]
        height, width, _ = metadata.image_shape

        def call(images: Any) -> Any:
            return signature(**{modeldir.INPUT_IMAGES: images})[modeldir.OUTPUT_PROBABILITIES]

        spec = tf.TensorSpec([None, height, width, 3], tf.float32)
        # One traced function returning only the probabilities: cheaper to call than the
        # structured signature, and the place XLA compiles each padded batch shape once.
        self._fn: Callable[[Any], Any] = tf.function(call, input_signature=[spec], jit_compile=options.xla or None)
        self._num_classes = metadata.num_classes

    def predict(self, images: np.ndarray) -> np.ndarray:
        probabilities = self._fn(self._tf.constant(images, dtype=self._tf.float32)).numpy()
        if probabilities.ndim != 2 or probabilities.shape[1] != self._num_classes:
            raise IncompatibleModel(
                f"model returned probabilities of shape {probabilities.shape}; expected [N, {self._num_classes}]"
            )
        return np.asarray(probabilities, dtype=np.float32)

    def close(self) -> None:
        self._fn = _closed
        self._loaded = None


def _closed(images: Any) -> Any:
    raise RuntimeError("runtime is closed")


class TensorFlowRuntimeFactory:
    def __init__(self, options: TensorFlowOptions = TensorFlowOptions()) -> None:
        self.options = options

    def __call__(self, model: str, version: int, path: Path, metadata: ModelMetadata) -> Runtime:
        configure(self.options)
        return TensorFlowRuntime(path, metadata, self.options)
