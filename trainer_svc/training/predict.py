"""``tfic predict`` on a local model version: the verbose JSON per image, like SageMaker's."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfic.errors import InvalidImage, NotFound, TficError
from tfic.imaging import IMAGE_SUFFIXES, check_decodable, decode_resize
from tfic.modeldir import (
    PREPROCESSING_DEFINITION,
    SIGNATURE_BYTES,
    SIGNATURE_IMAGES,
    read_metadata,
    resolve_version_dir,
)

log = logging.getLogger(__name__)


def list_images(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    raise NotFound(f"{target} does not exist")


class LocalPredictor:
    """Decodes with tfic's preprocessing definition (as the inference service does) and runs ``predict_images``.

    Not ``serving_default``: the signature cannot apply EXIF orientation, and decoding here gives precise
    errors instead of TensorFlow stack traces. A version trained before the one definition (metadata
    ``preprocessing.definition`` 1) is run through its own ``serving_default`` instead, whose graph decode
    is the one it was trained on.
    """

    def __init__(self, model_path: str | Path) -> None:
        self.version_dir = resolve_version_dir(model_path)
        self.meta = read_metadata(self.version_dir)
        loaded = tf.saved_model.load(str(self.version_dir))
        self._images = loaded.signatures[SIGNATURE_IMAGES]
        self.legacy = self.meta.preprocessing.definition < PREPROCESSING_DEFINITION
        self._bytes = loaded.signatures[SIGNATURE_BYTES] if self.legacy else None
        if self.legacy:
            log.info(
                "%s was trained with preprocessing definition %d: predicting through its own serving_default",
                self.version_dir,
                self.meta.preprocessing.definition,
            )
        height, width, _ = self.meta.image_shape
        self.size = (height, width)

    def prepare(self, data: bytes) -> np.ndarray | bytes:
        """One encoded image → the model's input: uint8 [H, W, 3] pixels (or, legacy, the checked bytes).

        Raises TficError for unusable data.
        """
        if self.legacy:
            check_decodable(data)
            return data
        return decode_resize(data, self.size, self.meta.preprocessing.interpolation)

    def predict_prepared(self, inputs: list[np.ndarray | bytes]) -> np.ndarray:
        if self._bytes is not None:
            out = self._bytes(image_bytes=tf.constant(inputs))
        else:
            out = self._images(images=tf.constant(np.stack(inputs), dtype=tf.float32))
        return np.asarray(out["probabilities"].numpy())

    def predict_bytes(self, images: list[bytes]) -> np.ndarray:
        return self.predict_prepared([self.prepare(data) for data in images])


def result_for(
    probabilities: np.ndarray,
    labels: tuple[str, ...],
    top_k: int = 0,
    output: str = "multi_class",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """SageMaker's verbose JSON for one image.

    A binary model answers with its one probability (of the second label) and the label the threshold picks.
    Multi-label models add ``predicted_labels``: every label whose probability is at least the model's
    ``threshold``, most probable first (``predicted_label`` stays the most probable one, over the threshold
    or not), and the ``threshold`` itself.
    """
    if output == "binary":  # SageMaker's shape: the one probability, of the positive (second) label
        positive = float(probabilities[0])
        return {
            "probabilities": [positive],
            "labels": [labels[1]],
            "predicted_label": labels[1] if positive >= threshold else labels[0],
            "threshold": threshold,
        }
    order = np.argsort(-probabilities, kind="stable")
    shown = order[:top_k] if top_k > 0 else np.arange(len(probabilities))
    result: dict[str, Any] = {
        "probabilities": [float(probabilities[i]) for i in shown],
        "labels": [labels[i] for i in shown],
        "predicted_label": labels[int(order[0])],
    }
    if output == "multi_label":
        result["predicted_labels"] = [labels[i] for i in order if probabilities[i] >= threshold]
        result["threshold"] = threshold
    return result


def predict_paths(
    predictor: LocalPredictor, paths: list[Path], top_k: int = 0, batch: int = 32
) -> Iterator[dict[str, Any]]:
    """One result per path, in order; unreadable images yield an ``error`` entry, not an exception."""
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        good: list[tuple[Path, np.ndarray | bytes]] = []
        errors: dict[Path, str] = {}
        for p in chunk:
            try:
                good.append((p, predictor.prepare(p.read_bytes())))
            except (OSError, TficError) as exc:
                errors[p] = str(exc) if isinstance(exc, TficError) else f"cannot read file: {exc}"
        probs = predictor.predict_prepared([x for _, x in good]) if good else np.zeros((0, 0))
        by_path = {p: probs[i] for i, (p, _) in enumerate(good)}
        for p in chunk:
            if p in errors:
                yield {"source": str(p), "error": errors[p]}
            else:
                meta = predictor.meta
                yield {"source": str(p), **result_for(by_path[p], meta.labels, top_k, meta.output, meta.threshold)}


__all__ = ["InvalidImage", "LocalPredictor", "list_images", "predict_paths", "result_for"]
