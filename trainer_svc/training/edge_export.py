"""``tfic export``: a model version as a TensorFlow Lite (or ONNX) file, its labels and preprocessing beside it.

The converted graph is what the version's ``predict_images`` signature computes (pixels in, ``probabilities``
out), not ``serving_default``: string decoding has no TFLite kernels, and an edge application decodes with its
platform's own image library. What the model expects of those pixels is written next to it
(``preprocessing.json``): RGB, 0..255 as float32, resized whole (no crop) to the model's height and width with
the version's interpolation; the backbone's scaling is inside the graph. Outputs are the SavedModel's
``probabilities`` as they are: a softmax for a multi-class model, one sigmoid per label (multi-label) or one
sigmoid of the positive class (binary), with the ``threshold`` in the sidecar.

Quantisation: ``none`` (float32), ``float16`` (weights stored as float16, computed in float32 where the device
has no float16) or ``int8`` (full integer: weights and activations int8, the activation ranges calibrated on
images of the training data; input and output stay float32 so the file is a drop-in for the float one).
"""

from __future__ import annotations

import json
import logging
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfic.errors import IncompatibleModel, InvalidArgument, InvalidDataset, TficError
from tfic.imaging import decode_resize
from tfic.modeldir import (
    LABELS_JSON,
    LABELS_TXT,
    OUTPUT_PROBABILITIES,
    ModelMetadata,
    read_metadata,
    resolve_version_dir,
    saved_probabilities,
)
from trainer_svc.data.source import DataSource

log = logging.getLogger(__name__)

FORMATS = ("tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
# TensorFlow is imported inside the functions: the CLI reads the names above to build its parser, and
# importing TensorFlow costs seconds that `tfic export --help` should not pay.
MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
INPUT_NAME = "images"
# ONNX Runtime 1.x runs opset 17 everywhere (and tf2onnx 1.17 tests it); newer opsets add nothing these models use.
ONNX_OPSET = 17
SIDECAR_FILE = "preprocessing.json"
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class ExportResult:
    model: Path
    sidecar: Path
    labels: tuple[Path, Path]
    format: str
    quantization: str
    bytes: int
    calibration_images: int


def calibration_pixels(source: DataSource, meta: ModelMetadata, limit: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``limit`` images of ``source`` as the model's float32 [H, W, 3] input, through tfic's preprocessing.

    The sample is seeded and spread over the classes in turn (one of each class, then a second of each, ...), so a
    small calibration set still sees every class's colours and contrasts. Undecodable images are skipped.
    """
    by_class: dict[int, list[int]] = {}
    for index, sample in enumerate(source.samples):
        by_class.setdefault(sample.labels[0] if sample.labels else -1, []).append(index)
    rng = random.Random(seed)
    for indices in by_class.values():
        rng.shuffle(indices)
    order = [i for rank in range(max(map(len, by_class.values()), default=0)) for i in _nth(by_class, rank)]
    height, width, _ = meta.image_shape
    pixels: list[np.ndarray] = []
    for index in order:
        if len(pixels) >= limit:
            break
        sample = source.samples[index]
        try:
            image = decode_resize(source.read(sample), (height, width), meta.preprocessing.interpolation)
        except (OSError, TficError) as exc:
            log.info("calibration: skipped %s: %s", sample.key, exc)
            continue
        pixels.append(image.astype(np.float32))
    if not pixels:
        raise InvalidDataset(f"{source.description or 'the calibration data'} holds no decodable image")
    return pixels


def _nth(by_class: dict[int, list[int]], rank: int) -> Iterator[int]:
    for label in sorted(by_class):
        if rank < len(by_class[label]):
            yield by_class[label][rank]


def _probabilities(loaded: Any, meta: ModelMetadata, batch: int | None) -> Any:
    """A tf.function pixels → ``probabilities``: the version's saved ``probabilities`` (what its signatures call).

    Not the ``predict_images`` signature itself: that also returns the labels as a string tile, a captured string
    constant neither TFLite nor tf2onnx can take in; the labels travel as files beside the model instead.
    """
    import tensorflow as tf

    height, width, _ = meta.image_shape
    saved = saved_probabilities(loaded)
    if saved is None:
        raise IncompatibleModel("the version saves no probabilities function (nor a Keras model) to export")

    @tf.function(input_signature=[tf.TensorSpec([batch, height, width, 3], tf.float32, name=INPUT_NAME)])  # type: ignore[untyped-decorator]
    def probabilities(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_PROBABILITIES: saved(images)}

    return probabilities


def convert_tflite(version_dir: Path, quantization: str = "none", calibration: list[np.ndarray] | None = None) -> bytes:
    """The TFLite flatbuffer of a version's pixels → ``probabilities``, batch 1 (what edge interpreters run)."""
    if quantization not in QUANTIZATIONS:
        raise InvalidArgument(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if quantization == "int8" and not calibration:
        raise InvalidArgument("int8 quantization needs calibration images (--calibration DATA: the training data)")
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    function = _probabilities(loaded, read_metadata(version_dir), 1)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], loaded)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        assert calibration is not None
        images = calibration

        def representative() -> Iterator[list[np.ndarray]]:
            for image in images:
                yield [image[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Every op in int8 (a float fallback would defeat integer-only accelerators); float32 at the two ends.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    flatbuffer: bytes = converter.convert()
    return flatbuffer


def convert_onnx(version_dir: Path, opset: int = ONNX_OPSET) -> bytes:
    """The ONNX model of a version's pixels → ``probabilities`` (any batch size), through tf2onnx."""
    import tensorflow as tf
    import tf2onnx  # the onnx extra; imported here so TFLite export does not need it

    loaded = tf.saved_model.load(str(version_dir))
    function = _probabilities(loaded, read_metadata(version_dir), None)
    model, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    serialized: bytes = model.SerializeToString()
    return serialized


def sidecar(
    meta: ModelMetadata, version_dir: Path, fmt: str, quantization: str, calibration_images: int
) -> dict[str, Any]:
    """What an edge application needs to feed the model and read its answer (``preprocessing.json``)."""
    height, width, channels = meta.image_shape
    pre = meta.preprocessing
    columns = list(meta.labels[1:] if meta.output == "binary" else meta.labels)
    return {
        "format_version": SIDECAR_FORMAT,
        "format": fmt,
        "model_file": MODEL_FILES[fmt],
        "quantization": quantization,
        "calibration_images": calibration_images,
        "input": {
            "name": INPUT_NAME,
            # TFLite: batch 1, as edge interpreters run; ONNX: any batch (null).
            "shape": [1 if fmt == "tflite" else None, height, width, channels],
            "dtype": "float32",
            "layout": "NHWC",
            "color": "RGB",
            "range": [0, 255],
            # tfic's preprocessing definition (tfic.imaging): the whole image resized, no crop, EXIF applied.
            "resize": pre.resize_mode,
            "interpolation": pre.interpolation,
            "exif_orientation": True,
            "preprocessing_definition": pre.definition,
            # Applied inside the model; recorded so a tool can show it, not to be applied again.
            "in_graph_scaling": {"scale": pre.scale, "offset": pre.offset, "mean": pre.mean, "std": pre.std},
        },
        "output": {
            "name": OUTPUT_PROBABILITIES,
            "shape": [1 if fmt == "tflite" else None, len(columns)],
            "dtype": "float32",
            "kind": meta.output,
            "columns": columns,
            "labels": list(meta.labels),
            **({"threshold": meta.threshold} if meta.output != "multi_class" else {}),
        },
        "source": {
            "model_version": version_dir.name,
            "model_name": version_dir.parent.name,
            "architecture": meta.architecture,
            "created": meta.created,
        },
    }


def export_model(
    model_path: str | Path,
    output_dir: Path,
    fmt: str = "tflite",
    quantization: str = "none",
    calibration: DataSource | None = None,
    calibration_limit: int = 200,
) -> ExportResult:
    """Write ``model.tflite`` (or ``model.onnx``), ``preprocessing.json``, ``labels.json`` and ``labels.txt``."""
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx" and quantization != "none":
        raise InvalidArgument("ONNX export is float32 only; quantize with ONNX Runtime's tools, or export tflite")
    if calibration is not None and quantization != "int8":
        raise InvalidArgument("calibration data is used by int8 quantization only (--quantize int8)")
    if calibration_limit < 1:
        raise InvalidArgument("the number of calibration images must be at least 1")
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidArgument(f"{output_dir} exists and is not a folder")
    version_dir = resolve_version_dir(model_path)
    meta = read_metadata(version_dir)
    pixels = calibration_pixels(calibration, meta, calibration_limit) if calibration is not None else None
    data = convert_onnx(version_dir) if fmt == "onnx" else convert_tflite(version_dir, quantization, pixels)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = output_dir / MODEL_FILES[fmt]
    model.write_bytes(data)
    side = output_dir / SIDECAR_FILE
    side.write_text(json.dumps(sidecar(meta, version_dir, fmt, quantization, len(pixels or [])), indent=2) + "\n")
    labels_json, labels_txt = output_dir / LABELS_JSON, output_dir / LABELS_TXT
    labels_json.write_text(json.dumps({"labels": list(meta.labels)}) + "\n")
    labels_txt.write_text("".join(f"{label}\n" for label in meta.labels))
    return ExportResult(model, side, (labels_json, labels_txt), fmt, quantization, len(data), len(pixels or []))


class TFLiteClassifier:
    """Runs an exported ``model.tflite`` on pixels, one image at a time, as an edge application would."""

    def __init__(self, model: Path) -> None:
        import tensorflow as tf

        with warnings.catch_warnings():
            # TensorFlow 2.21 announces the interpreter's move to ai-edge-litert (same API) on every construction.
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = tf.lite.Interpreter(model_path=str(model))
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [N, H, W, 3] pixels (0..255) → probabilities [N, C]."""
        rows = []
        for image in pixels:
            self.interpreter.set_tensor(self._input["index"], image[np.newaxis].astype(np.float32))
            self.interpreter.invoke()
            rows.append(np.array(self.interpreter.get_tensor(self._output["index"])[0], dtype=np.float32))
        return np.stack(rows)
