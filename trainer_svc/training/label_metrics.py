"""Multi-label metrics from probabilities and true label sets (numpy): training's report, ``tfic evaluate``'s.

Per class, at the model's threshold: precision, recall, F1 and support (images carrying the label); and its
average precision (the area under its precision-recall curve, threshold-free, as scikit-learn's
``average_precision_score``: ``Σ (R_n − R_{n−1}) P_n`` over distinct scores). Overall: mAP (the mean of
the classes' average precisions, over classes with at least one positive), micro and macro F1, exact-match
(subset) accuracy and the per-label accuracy averaged over classes (what MXNet logs as multi-label accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under one class's precision-recall curve; NaN when the class has no positives."""
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order].astype(np.float64)
    # One point per distinct score: ties enter the curve together.
    last_of_run = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tp = np.cumsum(truth)[last_of_run]
    seen = last_of_run + 1
    precision = tp / seen
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def multi_label_report(
    probabilities: np.ndarray, truth: np.ndarray, labels: tuple[str, ...] | list[str], threshold: float
) -> dict[str, Any]:
    """``probabilities`` float [N, C]; ``truth`` 0/1 [N, C]. JSON-ready."""
    truth = truth.astype(bool)
    predicted = probabilities >= threshold
    per_class: dict[str, dict[str, float]] = {}
    aps = []
    for i, name in enumerate(labels):
        tp = float(np.sum(predicted[:, i] & truth[:, i]))
        fp = float(np.sum(predicted[:, i] & ~truth[:, i]))
        fn = float(np.sum(~predicted[:, i] & truth[:, i]))
        precision, recall, f1 = _prf(tp, fp, fn)
        ap = average_precision(probabilities[:, i], truth[:, i])
        if not np.isnan(ap):
            aps.append(ap)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(truth[:, i].sum()),
            "average_precision": None if np.isnan(ap) else ap,  # type: ignore[dict-item]
        }
    micro = _prf(float(np.sum(predicted & truth)), float(np.sum(predicted & ~truth)), float(np.sum(~predicted & truth)))
    supported = [m["f1"] for m in per_class.values() if m["support"] > 0]
    return {
        "threshold": threshold,
        "images": len(truth),
        "mean_average_precision": float(np.mean(aps)) if aps else 0.0,
        "micro_precision": micro[0],
        "micro_recall": micro[1],
        "micro_f1": micro[2],
        "macro_f1": float(np.mean(supported)) if supported else 0.0,
        "subset_accuracy": float(np.mean(np.all(predicted == truth, axis=1))) if len(truth) else 0.0,
        "label_accuracy": float(np.mean(predicted == truth)) if truth.size else 0.0,
        "per_class": per_class,
    }


SUMMARY_KEYS = ("mean_average_precision", "micro_f1", "macro_f1", "subset_accuracy", "label_accuracy")


def format_multi_label(report: dict[str, Any], header: str) -> str:
    lines = [
        header,
        f"mAP             {report['mean_average_precision']:.4f}",
        f"micro F1        {report['micro_f1']:.4f}   (precision {report['micro_precision']:.4f}, "
        f"recall {report['micro_recall']:.4f})",
        f"macro F1        {report['macro_f1']:.4f}",
        f"exact match     {report['subset_accuracy']:.4f}",
        f"label accuracy  {report['label_accuracy']:.4f}   (threshold {report['threshold']:g})",
        "",
        f"{'class':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'AP':>9} {'support':>8}",
    ]
    for name, m in report["per_class"].items():
        ap = "-" if m["average_precision"] is None else f"{m['average_precision']:.4f}"
        lines.append(
            f"{name:<20} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {ap:>9} {int(m['support']):>8}"
        )
    return "\n".join(lines)
