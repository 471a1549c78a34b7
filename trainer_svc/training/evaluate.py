"""``tfic evaluate``: accuracy, top-k, per-class precision/recall/F1 and a confusion matrix; for a multi-label
model, per-class precision/recall/F1/average precision and mAP (:mod:`trainer_svc.training.label_metrics`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tensorflow as tf

from tfic.errors import InvalidArgument, InvalidDataset
from tfic.modeldir import SIGNATURE_IMAGES, read_metadata, resolve_version_dir
from trainer_svc.data.source import DataSource
from trainer_svc.training.hyperparameters import Hyperparameters
from trainer_svc.training.label_metrics import format_multi_label, multi_label_report
from trainer_svc.training.pipeline import InputSpec, make_dataset


@dataclass
class Evaluation:
    model: str
    version: int
    accuracy: float
    top_k: int
    top_k_accuracy: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    labels: list[str]
    images: int
    skipped: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MultiLabelEvaluation:
    """A multi-label model's evaluation: :func:`trainer_svc.training.label_metrics.multi_label_report` and where."""

    model: str
    version: int
    report: dict[str, Any]
    labels: list[str]
    images: int
    skipped: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "output": "multi_label",
            **self.report,
            "labels": self.labels,
            "skipped": self.skipped,
        }


def evaluate(model_path: str | Path, source: DataSource, top_k: int = 5, batch_size: int = 64) -> Evaluation:
    """A single-label (multi-class or binary) model's evaluation; :func:`evaluate_model` takes any model."""
    if read_metadata(resolve_version_dir(model_path)).multi_label:
        raise InvalidArgument(f"{model_path} is a multi-label model: it has no accuracy or confusion matrix")
    result = evaluate_model(model_path, source, top_k, batch_size)
    assert isinstance(result, Evaluation)
    return result


def evaluate_model(
    model_path: str | Path, source: DataSource, top_k: int = 5, batch_size: int = 64
) -> Evaluation | MultiLabelEvaluation:
    version_dir = resolve_version_dir(model_path)
    meta = read_metadata(version_dir)
    labels = list(meta.labels)
    unknown = sorted(set(source.class_names) - set(labels))
    if unknown:
        raise InvalidDataset(f"the data has classes the model does not know: {unknown} (model classes: {labels})")
    if source.multi_label and not meta.multi_label:
        raise InvalidDataset(f"{source.description} is multi-label, but {version_dir} is a {meta.output} model")
    # Map the data's label indices onto the model's (folders may hold only some of the classes).
    remap = np.asarray([labels.index(name) for name in source.class_names])
    loaded = tf.saved_model.load(str(version_dir))
    predict = loaded.signatures[SIGNATURE_IMAGES]
    spec = InputSpec(meta.image_shape, meta.preprocessing.interpolation, source.num_classes)
    ds = make_dataset(source, spec, batch_size, training=False, hp=Hyperparameters())
    probs = [predict(images=images)["probabilities"].numpy() for images, _ in ds]
    p = np.concatenate(probs)
    skipped = [{"key": s.key, "reason": s.reason} for s in source.skipped]
    where = str(version_dir.parent), int(version_dir.name) if version_dir.name.isdigit() else 0
    if meta.multi_label:
        truth = np.zeros((len(source.samples), len(labels)), dtype=bool)
        for i, sample in enumerate(source.samples):
            truth[i, remap[list(sample.labels)]] = True
        report = multi_label_report(p, truth, meta.labels, meta.threshold)
        return MultiLabelEvaluation(where[0], where[1], report, labels, len(truth), skipped)
    y = remap[np.asarray([s.label for s in source.samples], dtype=np.int64)]
    if meta.output == "binary":  # one column, the positive (second) class's probability, cut at the threshold
        pred = (p[:, 0] >= meta.threshold).astype(np.int64)
        p = np.concatenate([1.0 - p, p], axis=1)
    else:
        pred = p.argmax(axis=1)
    k = max(1, min(top_k, len(labels)))
    topk = np.argsort(-p, axis=1)[:, :k]
    c = len(labels)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(labels):
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(cm[i, :].sum()),
        }
    return Evaluation(
        model=where[0],
        version=where[1],
        accuracy=float((pred == y).mean()),
        top_k=k,
        top_k_accuracy=float((topk == y[:, None]).any(axis=1).mean()),
        per_class=per_class,
        confusion_matrix=cm.tolist(),
        labels=labels,
        images=len(y),
        skipped=skipped,
    )


def save_confusion_png(evaluation: Evaluation, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"accuracy {evaluation.accuracy:.4f} ({evaluation.images} images)"
    confusion_figure(np.asarray(evaluation.confusion_matrix), evaluation.labels, title, out)
    return out


def confusion_figure(cm: np.ndarray, labels: Sequence[str], title: str, out: Path | BinaryIO) -> None:
    """Draw a confusion matrix (rows: true, columns: predicted) as a PNG into ``out``: ``tfic evaluate``'s
    --confusion-png and the TensorBoard image of a training run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    size = max(4.0, min(0.5 * n + 2, 30.0))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), list(labels), rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        peak = cm.max() if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > peak / 2 else "black"
                )
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)


def format_report(evaluation: Evaluation | MultiLabelEvaluation) -> str:
    if isinstance(evaluation, MultiLabelEvaluation):
        header = f"model {evaluation.model} version {evaluation.version}: {evaluation.images} images (multi-label)"
        text = format_multi_label(evaluation.report, header)
        if evaluation.skipped:
            text += f"\n\nskipped {len(evaluation.skipped)} unreadable images:\n"
            text += "\n".join(f"  {s['key']}: {s['reason']}" for s in evaluation.skipped)
        return text
    lines = [
        f"model {evaluation.model} version {evaluation.version}: {evaluation.images} images",
        f"accuracy        {evaluation.accuracy:.4f}",
        f"top-{evaluation.top_k} accuracy  {evaluation.top_k_accuracy:.4f}",
        "",
        f"{'class':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for name, m in evaluation.per_class.items():
        lines.append(f"{name:<20} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {int(m['support']):>8}")
    lines.append("")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    width = max(4, *(len(str(v)) + 1 for row in evaluation.confusion_matrix for v in row))
    for name, row in zip(evaluation.labels, evaluation.confusion_matrix, strict=True):
        lines.append(f"{name[:12]:<12} " + "".join(f"{v:>{width}}" for v in row))
    if evaluation.skipped:
        lines.append(f"\nskipped {len(evaluation.skipped)} unreadable images:")
        lines.extend(f"  {s['key']}: {s['reason']}" for s in evaluation.skipped)
    return "\n".join(lines)
