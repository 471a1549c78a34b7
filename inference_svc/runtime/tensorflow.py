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
    mixed_precision: str = "off"  # off, float16, bfloat16


# Grappler's graph rewrites behind each --mixed-precision choice: float16 where a GPU runs the op
# (TensorFlow skips the pass without one), bfloat16 on the CPU through oneDNN.
_MIXED_PRECISION_PASSES = {"float16": "auto_mixed_precision", "bfloat16": "auto_mixed_precision_onednn_bfloat16"}


def configure(options: TensorFlowOptions) -> list[str]:
    """Thread pools and GPU memory growth; only the first call in a process has an effect.

    Returns the GPUs TensorFlow sees. ``intra_op_threads`` 0 keeps TensorFlow's pool of all cores; the
    entry point passes cores / batch threads instead (``inference_svc.server.process_settings``, see
    docs/inference.md, Tuning).
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
        _enable_mixed_precision(tf, options.mixed_precision, bool(gpus))
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError as exc:
                log.warning("GPU memory growth not enabled on %s: %s", gpu.name, exc)
        log.info(
            "TensorFlow %s on %s; thread pools: intra-op %s, inter-op %s (0: TensorFlow's default)",
            tf.__version__,
            ", ".join(g.name for g in gpus) if gpus else "CPU",
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
        return [g.name for g in gpus]


def _enable_mixed_precision(tf: Any, mode: str, have_gpu: bool) -> None:
    if mode == "off":
        return
    if mode == "float16" and not have_gpu:
        log.warning("--mixed-precision float16 applies to GPUs and none is visible: models run in float32")
    if mode == "bfloat16" and not cpu_has_bfloat16():
        log.warning("--mixed-precision bfloat16: this CPU has neither AVX512-BF16 nor AMX, so bfloat16 may be slower")
    tf.config.optimizer.set_experimental_options({_MIXED_PRECISION_PASSES[mode]: True})
    log.info("mixed precision: %s (grappler %s)", mode, _MIXED_PRECISION_PASSES[mode])


def cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: nothing to tell, no warning
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
        spec = tf.TensorSpec([None, *metadata.image_shape[:2], 3], tf.float32)
        self._fn: Callable[[Any], Any] = _probabilities_function(
            tf, self._loaded, signatures[modeldir.SIGNATURE_IMAGES], spec, options.xla, path
        )
        # uint8 pixels (what decoding gives) are cast to float32 inside the graph: a quarter of the bytes on
        # every copy before it (decode buffer, batch, tensor; a GPU's host-to-device transfer), and the cast
        # is exact, so the probabilities are those of the float32 signature.
        float_fn = self._fn
        self._fn_uint8: Callable[[Any], Any] = tf.function(
            lambda images: float_fn(tf.cast(images, tf.float32)), input_signature=[tf.TensorSpec(spec.shape, tf.uint8)]
        ).get_concrete_function()
        self._num_classes = len(metadata.columns)

    def predict(self, images: np.ndarray) -> np.ndarray:
        if images.dtype == np.uint8:
            probabilities = self._fn_uint8(self._tf.constant(images)).numpy()
        else:
            probabilities = self._fn(self._tf.constant(images, dtype=self._tf.float32)).numpy()
        if probabilities.ndim != 2 or probabilities.shape[1] != self._num_classes:
            raise IncompatibleModel(
                f"model returned probabilities of shape {probabilities.shape}; expected [N, {self._num_classes}]"
            )
        return np.asarray(probabilities, dtype=np.float32)

    def close(self) -> None:
        self._fn = self._fn_uint8 = _closed
        self._loaded = None


def _probabilities_function(tf: Any, loaded: Any, signature: Any, spec: Any, xla: bool, path: Path) -> Any:
    """One concrete function images → probabilities.

    A concrete function, not the ``tf.function`` itself: calling it skips binding and casting the
    arguments against the input signature, about a quarter of a millisecond per batch — the
    largest part of a small model's cost at small batch sizes.
    """

    def via_signature(images: Any) -> Any:
        return signature(**{modeldir.INPUT_IMAGES: images})[modeldir.OUTPUT_PROBABILITIES]

    if not xla:
        return tf.function(via_signature, input_signature=[spec]).get_concrete_function()
    # XLA cannot compile the signature itself: it also returns the labels, a string tensor. The exported
    # module (trainer_svc.training.export.ServingModule) saves the signature's probabilities alone as
    # ``probabilities``; versions exported before it carry the Keras model's own saved call as ``model``.
    saved = modeldir.saved_probabilities(loaded)
    if saved is None:
        raise IncompatibleModel(
            f"{path}: --xla needs the probabilities function (or the Keras model) the exporter saves "
            "(the signature alone cannot be compiled: it returns strings); serve it without --xla"
        )
    compiled = tf.function(saved, input_signature=[spec], jit_compile=True).get_concrete_function()
    probe = tf.random.stateless_uniform([2, *spec.shape[1:]], seed=(0, 1), maxval=255.0)
    expected, got = via_signature(probe).numpy(), compiled(probe).numpy()
    if expected.shape != got.shape or not np.allclose(expected, got, atol=1e-4):
        raise IncompatibleModel(f"{path}: the XLA-compiled model does not reproduce its signature's probabilities")
    return compiled


def _closed(images: Any) -> Any:
    raise RuntimeError("runtime is closed")


class TensorFlowRuntimeFactory:
    def __init__(self, options: TensorFlowOptions = TensorFlowOptions()) -> None:
        self.options = options

    def __call__(self, model: str, version: int, path: Path, metadata: ModelMetadata) -> Runtime:
        configure(self.options)
        return TensorFlowRuntime(path, metadata, self.options)
