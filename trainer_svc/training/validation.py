"""What "validated" means before a version gets a fleet label (``tfic models promote``):

1. **loads**: its metadata reads and TensorFlow loads the SavedModel with the ``predict_images`` signature;
2. **predicts**: a sample of images (the given ones, decoded with tfic's preprocessing as the inference service
   decodes them, else seeded random pixels at the model's input size) gets probabilities of the shape the
   metadata promises, finite and within [0, 1] (rows summing to 1 for a softmax model), twice (the warm-up
   the inference service runs), with the same answer both times;
3. optionally **is accurate enough**: with ``data`` and ``min_accuracy``, ``tfic evaluate``'s accuracy on that
   labelled data is at least ``min_accuracy`` (multi-label models: mAP).

Any failure raises :class:`tfic.errors.FailedPrecondition` naming the check; the report lists the checks passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfic.errors import FailedPrecondition, TficError

SAMPLE_SIZE = 8


@dataclass(frozen=True)
class ValidationReport:
    version_dir: Path
    checks: tuple[str, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"checks": list(self.checks), "seconds": round(self.seconds, 3)}


def validate_version(
    version_dir: Path,
    samples: list[Path] | None = None,
    data: str | None = None,
    min_accuracy: float | None = None,
    image_root: str | None = None,
) -> ValidationReport:
    from trainer_svc.training.predict import LocalPredictor

    start = time.perf_counter()
    checks: list[str] = []
    try:
        predictor = LocalPredictor(version_dir)
    except TficError as exc:
        raise FailedPrecondition(f"{version_dir} does not load: {exc.message}") from None
    except Exception as exc:  # TensorFlow's own errors when the SavedModel is damaged
        raise FailedPrecondition(f"{version_dir} does not load: {type(exc).__name__}: {exc}") from None
    meta = predictor.meta
    checks.append("loads")
    if samples:
        inputs = [predictor.prepare(p.read_bytes()) for p in samples[:SAMPLE_SIZE]]
        what = f"{len(inputs)} sample image(s)"
    else:
        height, width, _ = meta.image_shape
        rng = np.random.default_rng(0)
        inputs = list(rng.integers(0, 256, (SAMPLE_SIZE, height, width, 3), dtype=np.uint8))
        what = f"{SAMPLE_SIZE} random images"
    first = _checked(predictor.predict_prepared(inputs), len(inputs), meta.output, meta.num_classes, version_dir)
    second = predictor.predict_prepared(inputs)
    if not np.allclose(first, second, atol=1e-5):
        raise FailedPrecondition(f"{version_dir} answers the same images differently on a second run")
    checks.append(f"predicts {what} (twice, identical)")
    if data is not None and min_accuracy is not None:
        accuracy = _accuracy(version_dir, data, image_root)
        if accuracy < min_accuracy:
            raise FailedPrecondition(
                f"{version_dir} scores {accuracy:.4f} on {data}, below the required {min_accuracy:.4f}"
            )
        checks.append(f"accuracy {accuracy:.4f} >= {min_accuracy:.4f} on {data}")
    return ValidationReport(version_dir, tuple(checks), time.perf_counter() - start)


def _checked(p: np.ndarray, n: int, output: str, classes: int, where: Path) -> np.ndarray:
    columns = 1 if output == "binary" else classes
    if p.shape != (n, columns):
        raise FailedPrecondition(f"{where} returned probabilities of shape {p.shape}; expected {(n, columns)}")
    if not np.isfinite(p).all() or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise FailedPrecondition(f"{where} returned probabilities that are not finite numbers in [0, 1]")
    if output == "multi_class" and not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise FailedPrecondition(f"{where} returned rows that do not sum to 1 (a softmax model's must)")
    return p


def _accuracy(version_dir: Path, data: str, image_root: str | None) -> float:
    from trainer_svc.data.loader import load_source, scan
    from trainer_svc.training.evaluate import MultiLabelEvaluation, evaluate_model

    source = scan(load_source(data, None, image_root, check_classes=False, label_format="auto"))
    result = evaluate_model(version_dir, source)
    if isinstance(result, MultiLabelEvaluation):
        return float(result.report["mean_average_precision"])
    return float(result.accuracy)
