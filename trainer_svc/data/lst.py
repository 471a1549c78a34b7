"""MXNet/SageMaker image lists: ``index<TAB>label(s)<TAB>relative/path``, one image per line.

Columns 2..n-1 are labels. MXNet's im2rec writes them as floats (``1.000000``), so any float with
an integral value is accepted. Several label columns make a multi-label row: by default they are
class indices; with ``label_format="multi-hot"`` they are a 0/1 vector with one column per class
(SageMaker's multi-label default), and ``auto`` tells the two apart (:mod:`trainer_svc.data.labels`).
Every error names the file and the 1-based line.

Class names come from ``class_names`` if given, else from ``labels.json``/``classes.txt`` next to
the .lst (see :mod:`trainer_svc.data.classnames`), else class i is named ``"i"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfic.errors import InvalidDataset, NotFound, PermissionDenied
from trainer_svc.data.classnames import find_class_names, resolve_class_names, validate_class_names
from trainer_svc.data.labels import class_ids, from_multi_hot, resolve_format
from trainer_svc.data.source import FileSource, Sample


@dataclass(frozen=True)
class LstRow:
    index: int
    labels: tuple[int, ...]
    path: str
    line: int = 0  # 1-based line in the file it was read from; 0 when built in code


def parse_lst(
    path: str | os.PathLike[str], num_classes: int | None = None, multi_hot: bool = False, label_format: str = ""
) -> list[LstRow]:
    """Parse and check the syntax of a .lst file (not the image paths; see :func:`resolve_images`)."""
    return _parse(Path(path), num_classes, label_format or ("multi-hot" if multi_hot else "class-id"))[0]


def _parse(lst: Path, num_classes: int | None, label_format: str) -> tuple[list[LstRow], int | None]:
    """Rows, and for multi-hot files the number of label columns (= classes)."""
    if not lst.is_file():
        raise NotFound(f"list file {lst} does not exist")
    raw: list[tuple[int, int, list[int], str]] = []  # line, index, label values, path
    first_line_of: dict[int, int] = {}
    with lst.open(encoding="utf-8") as f:
        for lineno, line_raw in enumerate(f, start=1):
            line = line_raw.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{lst}, line {lineno}"
            cols = line.split("\t")
            if len(cols) < 3:
                hint = " (columns must be separated by tabs, not spaces)" if " " in line else ""
                raise InvalidDataset(
                    f"{where}: expected at least 3 tab-separated columns (index, label(s), path), "
                    f"found {len(cols)}{hint}"
                )
            index_text = cols[0].strip()
            try:
                index = int(index_text)
            except ValueError:
                raise InvalidDataset(f"{where}: index {index_text!r} in column 1 is not an integer") from None
            if index in first_line_of:
                raise InvalidDataset(f"{where}: duplicate index {index} (first used on line {first_line_of[index]})")
            first_line_of[index] = lineno
            values = [_label(text.strip(), where, col) for col, text in enumerate(cols[1:-1], start=2)]
            raw.append((lineno, index, values, cols[-1].strip()))
    if not raw:
        raise InvalidDataset(f"{lst} has no entries")
    multi_hot = resolve_format(label_format, [r[2] for r in raw], num_classes) == "multi-hot"
    width: int | None = None
    rows: list[LstRow] = []
    for lineno, index, values, path in raw:
        where = f"{lst}, line {lineno}"
        if multi_hot:
            if num_classes is not None and len(values) != num_classes:
                raise InvalidDataset(
                    f"{where}: {len(values)} multi-hot label columns, but there are {num_classes} classes"
                )
            if width is None:
                width = len(values)
            elif len(values) != width:
                raise InvalidDataset(
                    f"{where}: {len(values)} label columns, but earlier lines have {width} (multi-hot rows need "
                    "one column per class)"
                )
            if any(v not in (0, 1) for v in values):
                raise InvalidDataset(f"{where}: multi-hot label columns must be 0 or 1, found {values}")
            labels = from_multi_hot(values, where, width)
        else:
            labels = class_ids(values, where)
        limit = width if multi_hot else num_classes
        for label in labels:
            if limit is not None and label >= limit:
                raise InvalidDataset(f"{where}: label {label} is out of range; there are {limit} classes")
        rows.append(LstRow(index=index, labels=labels, path=path, line=lineno))
    return rows, width


def _label(text: str, where: str, column: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InvalidDataset(f"{where}: label {text!r} in column {column} is not a number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise InvalidDataset(
            f"{where}: label {text!r} in column {column} is not a whole number (class labels are integers; "
            "MXNet's 1.000000 is fine)"
        )
    if value < 0:
        raise InvalidDataset(f"{where}: label {text!r} in column {column} is negative")
    return int(value)


def resolve_images(
    rows: Sequence[LstRow], lst_path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None
) -> list[str]:
    """The real path of each row's image, checked to exist and to stay inside ``image_root``.

    ``image_root`` defaults to the .lst's folder. Backslashes are read as separators so lists made
    by im2rec on Windows work.
    """
    lst = Path(lst_path)
    root = Path(image_root) if image_root is not None else lst.parent
    if not root.is_dir():
        raise NotFound(f"image root {root} does not exist")
    real_root = os.path.realpath(root)
    paths: list[str] = []
    for row in rows:
        where = f"{lst}, line {row.line}"
        rel = row.path.replace("\\", "/")
        if not rel:
            raise InvalidDataset(f"{where}: the path column is empty")
        if rel.startswith("/") or os.path.isabs(rel) or (len(rel) > 1 and rel[1] == ":"):
            raise PermissionDenied(f"{where}: path {row.path!r} is absolute; paths must be relative to the image root")
        if ".." in rel.split("/"):
            raise PermissionDenied(f"{where}: path {row.path!r} contains '..'; paths must stay inside the image root")
        real = os.path.realpath(os.path.join(real_root, rel))
        if os.path.commonpath([real_root, real]) != real_root:
            raise PermissionDenied(f"{where}: path {row.path!r} is a symlink that resolves outside the image root")
        if not os.path.isfile(real):
            raise InvalidDataset(f"{where}: image file {rel!r} not found under {root}")
        paths.append(real)
    return paths


def read_lst(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    multi_hot: bool = False,
    check_classes: bool = True,
    label_format: str = "",
) -> FileSource:
    """Read a .lst and the images it names. ``check_classes``: see :func:`resolve_class_names`.

    ``label_format`` (:mod:`trainer_svc.data.labels`): ``class-id`` (the default), ``multi-hot``
    (``multi_hot=True``) or ``auto``.
    """
    label_format = label_format or ("multi-hot" if multi_hot else "class-id")
    lst = Path(path)
    names: tuple[str, ...] | None = None
    if class_names is not None:
        names = validate_class_names(class_names, "class names")
    elif (found := find_class_names(lst.parent)) is not None:
        names = found[0]
    rows, width = _parse(lst, len(names) if names is not None else None, label_format)
    if names is None and width is not None:
        # A multi-hot vector states the class count even when the last class is never set.
        names = tuple(str(i) for i in range(width))
    paths = resolve_images(rows, lst, image_root)
    used = {label for row in rows for label in row.labels}
    resolved = resolve_class_names(used, names, str(lst), check_classes)
    samples = [
        Sample(key=row.path.replace("\\", "/"), labels=row.labels, path=real)
        for row, real in zip(rows, paths, strict=True)
    ]
    multi_label = width is not None or any(len(row.labels) > 1 for row in rows)
    return FileSource(
        samples=samples,
        class_names=resolved,
        description=f"list {lst}: {len(samples)} images in {len(resolved)} classes",
        multi_label=multi_label,
    )


def write_lst(path: str | os.PathLike[str], rows: Iterable[LstRow]) -> int:
    """Write rows as im2rec does (labels as ``%f``) so MXNet tools read the file too; returns the row count."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            if any(c in row.path for c in "\t\r\n"):
                raise InvalidDataset(f"cannot write {row.path!r} to a .lst: paths may not contain tabs or newlines")
            labels = "\t".join(f"{label:f}" for label in row.labels)
            f.write(f"{row.index}\t{labels}\t{row.path}\n")
            count += 1
    return count
