"""SageMaker's augmented manifest: JSON Lines, one image per line, attributes named by ``AttributeNames``.

``{"source-ref": "s3://bucket/cat1.jpg", "class": "0"}`` (SageMaker's pipe-mode input, and Ground Truth's
output). ``attribute_names`` are SageMaker's ``AttributeNames`` in its order, the image's first and the
label's second (default: ``source-ref``, and the one other attribute that is not ``*-metadata``). A label is
a class index (``0``, ``"0"``, ``1.0``) or, for multi-label, a JSON list (``[1, 0, 1]`` multi-hot or
``[0, 2]`` class ids, see :mod:`trainer_svc.data.labels`). Class names come from ``class_names``, else
from Ground Truth's ``<label>-metadata`` (``class-name`` for one label, ``class-map`` for several), else
``labels.json``/``classes.txt`` beside the manifest, else ``"0"…"N-1"``.

Image references are local paths (absolute, or relative to the manifest's folder) or ``s3://`` URIs; the
readers read local files only, so an ``s3://`` reference must be fetched first
(:func:`trainer_svc.service.s3.localize_manifest`, which the Trainer service's workers and ``tfic train``
run) and the manifest rewritten with the local copies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfic.errors import InvalidDataset, NotFound
from trainer_svc.data.classnames import find_class_names, resolve_class_names, validate_class_names
from trainer_svc.data.labels import class_ids, from_multi_hot, resolve_format
from trainer_svc.data.source import FileSource, Sample

SUFFIXES = (".manifest", ".jsonl")
IMAGE_ATTRIBUTE = "source-ref"


@dataclass(frozen=True)
class ManifestLine:
    line: int
    image: str  # the reference as written: a path or an s3:// URI
    values: tuple[float, ...]
    multi: bool  # the label was a list
    names: dict[int, str]  # class names Ground Truth's metadata gives


def parse_attribute_names(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"source-ref,class"`` or a list; None stays None (the defaults)."""
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        return None
    if len(names) != 2 or len(set(names)) != 2:
        raise InvalidDataset(
            f"attribute names {names}: give two, the image's then the label's (SageMaker's AttributeNames, "
            'e.g. "source-ref,class")'
        )
    return tuple(names)


def read_lines(path: Path, attribute_names: Sequence[str] | None = None) -> list[ManifestLine]:
    if not path.is_file():
        raise NotFound(f"manifest {path} does not exist")
    image_key = attribute_names[0] if attribute_names else IMAGE_ATTRIBUTE
    label_key = attribute_names[1] if attribute_names else None
    lines: list[ManifestLine] = []
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise InvalidDataset(f"{where}: not a JSON object ({exc})") from None
            if not isinstance(record, dict):
                raise InvalidDataset(f"{where}: expected a JSON object, found {type(record).__name__}")
            if image_key not in record:
                raise InvalidDataset(
                    f"{where}: no {image_key!r} attribute (it has: {', '.join(sorted(record))}); the attribute "
                    "names are the image's then the label's (SageMaker's AttributeNames)"
                )
            key = label_key or _label_key(record, image_key, where)
            for needed in (key,):
                if needed not in record:
                    raise InvalidDataset(
                        f"{where}: no {needed!r} attribute (it has: {', '.join(sorted(record))}); the attribute "
                        "names are the image's then the label's (SageMaker's AttributeNames)"
                    )
            image = record[image_key]
            if not isinstance(image, str) or not image:
                raise InvalidDataset(f"{where}: {image_key!r} must be a path or an s3:// URI, found {image!r}")
            values, multi = _values(record[key], where, key)
            names = _metadata_names(record.get(f"{key}-metadata"), values, multi)
            lines.append(ManifestLine(lineno, image, values, multi, names))
    if not lines:
        raise InvalidDataset(f"manifest {path} has no entries")
    return lines


def _label_key(record: dict[str, Any], image_key: str, where: str) -> str:
    others = [k for k in record if k != image_key and not k.endswith("-metadata")]
    if len(others) != 1:
        raise InvalidDataset(
            f"{where}: cannot tell the label attribute among {others or 'no attributes'}; name it "
            '(SageMaker\'s AttributeNames, e.g. "source-ref,class")'
        )
    return others[0]


def _values(raw: Any, where: str, key: str) -> tuple[tuple[float, ...], bool]:
    if isinstance(raw, str) and raw.strip().startswith("["):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidDataset(f"{where}: {key!r} {raw!r} is not a JSON list") from None
    items = raw if isinstance(raw, list) else [raw]
    values: list[float] = []
    for item in items:
        if isinstance(item, bool):
            raise InvalidDataset(f"{where}: {key!r} holds {item!r}, not a class number")
        try:
            values.append(float(item))
        except (TypeError, ValueError):
            raise InvalidDataset(f"{where}: {key!r} holds {item!r}, not a class number") from None
    if not values:
        raise InvalidDataset(f"{where}: {key!r} is empty")
    return tuple(values), isinstance(raw, list)


def _metadata_names(meta: Any, values: tuple[float, ...], multi: bool) -> dict[int, str]:
    """Ground Truth's names: ``{"class-name": "cat"}`` for one class id, ``{"class-map": {"0": "cat"}}``."""
    if not isinstance(meta, dict):
        return {}
    names: dict[int, str] = {}
    name = meta.get("class-name")
    if isinstance(name, str) and name and not multi and float(values[0]).is_integer() and values[0] >= 0:
        names[int(values[0])] = name
    class_map = meta.get("class-map")
    if isinstance(class_map, dict):
        for k, v in class_map.items():
            if str(k).isdigit() and isinstance(v, str):
                names[int(k)] = v
    return names


def local_path(manifest: Path, image: str, where: str) -> str:
    if "://" in image:
        raise InvalidDataset(
            f"{where}: {image} is not a local path; give the manifest as s3://… (tfic train, the Trainer service) "
            "so that its images are fetched first"
        )
    path = Path(image) if os.path.isabs(image) else manifest.parent / image
    if not path.is_file():
        raise InvalidDataset(f"{where}: image {image!r} not found")
    return str(path)


def read_manifest(
    path: str | os.PathLike[str],
    *,
    attribute_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    check_classes: bool = True,
    label_format: str = "class-id",
) -> FileSource:
    manifest = Path(path)
    lines = read_lines(manifest, attribute_names)
    names: tuple[str, ...] | None = None
    if class_names is not None:
        names = validate_class_names(class_names, "class names")
    fmt = resolve_format(label_format, [ln.values for ln in lines if ln.multi], len(names) if names else None)
    multi_rows = [ln for ln in lines if ln.multi]
    width = len(multi_rows[0].values) if fmt == "multi-hot" and multi_rows else None
    samples: list[Sample] = []
    named: dict[int, tuple[str, int]] = {}
    for ln in lines:
        where = f"{manifest}, line {ln.line}"
        labels = (
            from_multi_hot(ln.values, where, width) if width is not None and ln.multi else class_ids(ln.values, where)
        )
        for index, name in ln.names.items():
            earlier = named.setdefault(index, (name, ln.line))
            if earlier[0] != name:
                raise InvalidDataset(
                    f"{where}: class {index} is named {name!r}, but line {earlier[1]} names it {earlier[0]!r}"
                )
        samples.append(Sample(key=ln.image, labels=labels, path=local_path(manifest, ln.image, where)))
    used = {label for s in samples for label in s.labels}
    if names is None and named:
        top = max(used | set(named)) + 1
        names = tuple(named[i][0] if i in named else str(i) for i in range(top))
    elif names is None and (found := find_class_names(manifest.parent)) is not None:
        names = found[0]
    elif names is None and width is not None:
        names = tuple(str(i) for i in range(width))
    resolved = resolve_class_names(used, names, str(manifest), check_classes)
    return FileSource(
        samples=samples,
        class_names=resolved,
        description=f"manifest {manifest}: {len(samples)} images in {len(resolved)} classes",
        multi_label=width is not None or any(len(s.labels) > 1 for s in samples),
    )
