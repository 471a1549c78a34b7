"""Class names for formats that store only label indices (.lst, .rec, TFRecord without text).

Convention: a ``labels.json`` (``{"labels": [...]}``, the same file the trainer writes beside a
model) or, failing that, a ``classes.txt`` (one name per line, line i names class i) in the same
directory as the list/record file names its classes. Without either, class i is named ``"i"``.
``tfic data make-lst`` writes ``labels.json`` next to the lists it makes, so a folder dataset keeps
its names through .lst and .rec.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path

from tfic.errors import InvalidDataset

LABELS_JSON = "labels.json"
CLASSES_TXT = "classes.txt"


def find_class_names(directory: Path) -> tuple[tuple[str, ...], Path] | None:
    """The class names stored next to a dataset file, and the file they came from, if any."""
    for name in (LABELS_JSON, CLASSES_TXT):
        path = directory / name
        if path.is_file():
            return read_class_names(path), path
    return None


def read_class_names(path: Path) -> tuple[str, ...]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidDataset(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        names = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidDataset(f'{path}: expected {{"labels": ["name0", "name1", ...]}} (a list of strings)')
    else:
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
    return validate_class_names(names, str(path))


def validate_class_names(names: Sequence[str], where: str) -> tuple[str, ...]:
    for i, name in enumerate(names):
        if not name:
            raise InvalidDataset(f"{where}: class {i} has an empty name")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InvalidDataset(f"{where}: class name {name!r} is used by both class {seen[name]} and class {i}")
        seen[name] = i
    return tuple(names)


def write_class_names(path: Path, names: Sequence[str]) -> None:
    path.write_text(json.dumps({"labels": list(names)}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def resolve_class_names(
    used: Collection[int],
    names: Sequence[str] | None,
    where: str,
    check_classes: bool = True,
) -> tuple[str, ...]:
    """Names for labels ``used`` (already checked to be < len(names) when names are given).

    With ``check_classes``, labels must be exactly 0..N-1 with every class present and N ≥ 2,
    which is what training needs; a gap is almost always a bug in the list, so it is named.
    """
    if not used:
        raise InvalidDataset(f"{where} has no samples")
    count = len(names) if names is not None else max(used) + 1
    if check_classes:
        missing = [i for i in range(count) if i not in used]
        if missing:
            shown = ", ".join(_describe(i, names) for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise InvalidDataset(
                f"{where}: class {shown}{more} has no samples; labels must be 0..{count - 1} with every class present"
            )
        if count < 2:
            raise InvalidDataset(f"{where}: only one class ({_describe(0, names)}); at least 2 are needed to train")
    return tuple(names) if names is not None else tuple(str(i) for i in range(count))


def _describe(index: int, names: Sequence[str] | None) -> str:
    return f"{index} ({names[index]!r})" if names is not None else str(index)
