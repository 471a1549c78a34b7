"""Response bodies, byte for byte: SageMaker's four prediction shapes and TensorFlow Serving's REST shapes.

JSON is compact (``separators=(",", ":")``), UTF-8 (labels are not ``\\u``-escaped), keys in the documented
order. Probabilities are the float32 values the model computed, printed as the shortest decimal that reads
back as the same double (``0.10000000149011612``), exactly as ``tfic predict`` prints them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.negotiation import ResponseFormat
from gateway.upstream import Classification, ModelInfo, VersionInfo
from tfic.modeldir import (
    INPUT_BYTES,
    INPUT_IMAGES,
    OUTPUT_CLASSES,
    OUTPUT_PROBABILITIES,
    SIGNATURE_BYTES,
    SIGNATURE_IMAGES,
)

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> bytes:
    return _encode(value).encode()


def prediction(result: Classification, fmt: ResponseFormat) -> bytes:
    """One image's body in the negotiated representation.

    The verbose shapes are ``tfic predict``'s: a multi-label model adds ``predicted_labels`` (every label at
    or over the threshold) and ``threshold``; a binary model's one probability is its positive label's,
    with ``threshold``.
    """
    probabilities = list(result.probabilities)
    if fmt is ResponseFormat.JSON:
        return dumps(probabilities)
    if fmt is ResponseFormat.JSONLINES:
        return dumps({"prediction": probabilities}) + b"\n"
    key = "probabilities" if fmt is ResponseFormat.JSON_VERBOSE else "prediction"
    body: dict[str, Any] = {
        key: probabilities,
        "labels": list(result.labels),
        "predicted_label": result.predicted_label,
    }
    if result.output == "multi_label":
        body["predicted_labels"] = list(result.predicted_labels)
    if result.output != "multi_class":
        body["threshold"] = result.threshold
    if fmt is ResponseFormat.JSON_VERBOSE:
        return dumps(body)
    return dumps(body) + b"\n"


def version_json(v: VersionInfo) -> dict[str, Any]:
    shape = v.input_shape
    return {
        "version": v.version,
        "state": v.state,
        "error": v.error,
        "labels": list(v.labels),
        "input_shape": None if shape is None else {"height": shape[0], "width": shape[1], "channels": shape[2]},
        "version_labels": list(v.version_labels),
        "output": v.output,
        "threshold": v.threshold,
    }


def model_json(model: ModelInfo) -> dict[str, Any]:
    return {"name": model.name, "versions": [version_json(v) for v in model.versions]}


def models(items: Sequence[ModelInfo]) -> bytes:
    return dumps({"models": [model_json(m) for m in items]})


# --- TensorFlow Serving REST ------------------------------------------------------------------------------


def tfs_predictions(results: Sequence[Classification]) -> bytes:
    """Row format (``instances`` in): one object per image with each output of ``serving_default``."""
    return dumps(
        {
            "predictions": [
                {OUTPUT_PROBABILITIES: list(r.probabilities), OUTPUT_CLASSES: list(r.labels)} for r in results
            ]
        }
    )


def tfs_outputs(results: Sequence[Classification]) -> bytes:
    """Columnar format (``inputs`` in): each output batched over the images."""
    return dumps(
        {
            "outputs": {
                OUTPUT_PROBABILITIES: [list(r.probabilities) for r in results],
                OUTPUT_CLASSES: [list(r.labels) for r in results],
            }
        }
    )


def tfs_classify(results: Sequence[Classification]) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``, one list per example."""
    return dumps({"results": [[[lab, p] for lab, p in zip(r.labels, r.probabilities, strict=True)] for r in results]})


# TF Serving's ModelVersionStatus.State names for tfic's version states.
_TFS_STATE = {"LOADING": "LOADING", "AVAILABLE": "AVAILABLE", "UNLOADING": "UNLOADING", "END": "END", "FAILED": "END"}


def tfs_status(versions: Sequence[VersionInfo]) -> bytes:
    return dumps(
        {
            "model_version_status": [
                {
                    "version": str(v.version),
                    "state": _TFS_STATE.get(v.state, "UNKNOWN"),
                    "status": {
                        "error_code": "UNKNOWN" if v.state == "FAILED" else "OK",
                        "error_message": v.error,
                    },
                }
                for v in versions
            ]
        }
    )


def _tensor(dtype: str, *dims: int) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False},
    }


def tfs_metadata(name: str, version: VersionInfo) -> bytes:
    """GetModelMetadata's JSON for a tfic model version (its signatures follow tfic.modeldir's contract)."""
    columns = 1 if version.output == "binary" else len(version.labels)  # a binary model's one sigmoid
    classes = columns or -1
    height, width, _ = version.input_shape or (-1, -1, 3)
    outputs = {
        OUTPUT_PROBABILITIES: _tensor("DT_FLOAT", -1, classes),
        OUTPUT_CLASSES: _tensor("DT_STRING", -1, classes),
    }
    signatures = {
        SIGNATURE_BYTES: {
            "inputs": {INPUT_BYTES: _tensor("DT_STRING", -1)},
            "outputs": outputs,
            "method_name": "tensorflow/serving/predict",
        },
        SIGNATURE_IMAGES: {
            "inputs": {INPUT_IMAGES: _tensor("DT_FLOAT", -1, height, width, 3)},
            "outputs": outputs,
            "method_name": "tensorflow/serving/predict",
        },
    }
    return dumps(
        {
            "model_spec": {"name": name, "signature_name": "", "version": str(version.version)},
            "metadata": {"signature_def": {"signature_def": signatures}},
        }
    )
