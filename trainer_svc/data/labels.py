"""How a row's label values become class indices: class ids, or a multi-hot vector (SageMaker's two formats).

SageMaker's multi-label input has two label formats (its content type's ``label-format`` parameter):
``class-id`` (each value is a class index: ``[0, 2]``) and ``multi-hot`` (one 0/1 value per class:
``[1, 0, 1]``, SageMaker's default). The same holds for ``.lst`` label columns and RecordIO's extra labels.
``auto`` reads a dataset as multi-hot when every row has the same number (≥ 2) of values, all 0 or 1 (and,
when the class count is known, one per class), and as class ids otherwise: class ids of one row are distinct,
so with 3 or more classes no class-id dataset looks multi-hot; with 2 it would need every image to carry both
classes. Single-label rows (one value each) are class ids in every format.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfic.errors import InvalidDataset

LABEL_FORMATS = ("class-id", "multi-hot", "auto")


def looks_multi_hot(rows: Sequence[Sequence[float]], num_classes: int | None) -> bool:
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        return False
    (width,) = widths
    if width < 2 or (num_classes is not None and width != num_classes):
        return False
    return all(v in (0.0, 1.0) for r in rows for v in r)


def resolve_format(label_format: str, rows: Sequence[Sequence[float]], num_classes: int | None) -> str:
    if label_format not in LABEL_FORMATS:
        raise InvalidDataset(f"unknown label format {label_format!r}; use one of {', '.join(LABEL_FORMATS)}")
    if label_format == "auto":
        return "multi-hot" if looks_multi_hot(rows, num_classes) else "class-id"
    return label_format


def class_ids(values: Sequence[float], where: str) -> tuple[int, ...]:
    """Whole, non-negative, distinct class indices."""
    labels: list[int] = []
    for value in values:
        if not float(value).is_integer() or value < 0:
            raise InvalidDataset(f"{where}: label {value:g} is not a whole non-negative number")
        labels.append(int(value))
    if len(set(labels)) != len(labels):
        hint = (
            " (it looks like a multi-hot vector: train with multi_label=1, label_format multi-hot or auto)"
            if len(labels) > 2 and set(labels) <= {0, 1}
            else ""
        )
        raise InvalidDataset(f"{where}: a label is repeated in {tuple(labels)}{hint}")
    return tuple(labels)


def from_multi_hot(values: Sequence[float], where: str, width: int) -> tuple[int, ...]:
    """The classes set to 1 in a 0/1 vector of ``width`` values."""
    if len(values) != width:
        raise InvalidDataset(f"{where}: {len(values)} multi-hot label values, but there are {width} classes")
    if any(v not in (0.0, 1.0) for v in values):
        raise InvalidDataset(f"{where}: multi-hot label values must be 0 or 1, found {[f'{v:g}' for v in values]}")
    labels = tuple(i for i, v in enumerate(values) if v == 1.0)
    if not labels:
        raise InvalidDataset(f"{where}: multi-hot row has no class set to 1")
    return labels
