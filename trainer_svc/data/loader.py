"""One entry point for every format, the decode-everything-once scan, and the stratified split."""

from __future__ import annotations

import glob
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tfic.errors import InvalidArgument, InvalidDataset, NotFound, TficError
from tfic.imaging import check_decodable
from trainer_svc.data.source import DataSource, Sample, SkippedSample

FORMATS = ("folders", "lst", "rec", "tfrecord", "manifest")
_ALIASES = {
    "folder": "folders",
    "dir": "folders",
    "recordio": "rec",
    "tfrecords": "tfrecord",
    "augmented-manifest": "manifest",
}
# Every spelling a --format option accepts: the names above and their aliases.
CLI_FORMATS = (*FORMATS, *_ALIASES)


def canonical_format(name: str) -> str:
    """A format's name in :data:`FORMATS` for any spelling in :data:`CLI_FORMATS`."""
    return _ALIASES.get(name, name)


_SUFFIXES = {
    ".lst": "lst",
    ".rec": "rec",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".record": "tfrecord",
    ".manifest": "manifest",
    ".jsonl": "manifest",
}


def infer_format(uri: str) -> str:
    """The format of a local path or glob: a folder is class folders, else by file extension."""
    path = Path(uri)
    if glob.has_magic(uri) and not path.exists():
        fmt = _SUFFIXES.get(Path(uri).suffix.lower())
        if fmt != "tfrecord":
            raise InvalidDataset(f"{uri}: globs are supported for TFRecord files only (*.tfrecord, *.record)")
        return fmt
    if not path.exists():
        raise NotFound(f"dataset {uri} does not exist")
    if path.is_dir():
        return "folders"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InvalidDataset(
            f"cannot tell the format of {uri} from its name; use a folder, a .lst, .rec, .tfrecord or .manifest file, "
            f"or name the format ({', '.join(FORMATS)})"
        )
    return fmt


def _channel_file(folder: Path) -> tuple[str, str] | None:
    entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    if any(e.is_dir() for e in entries):
        return None
    by_format: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        fmt = _SUFFIXES.get(Path(e.name).suffix.lower())
        if fmt is not None:
            by_format[fmt].append(e.path)
    if len(by_format) > 1:
        files = sorted(Path(f).name for found in by_format.values() for f in found)
        raise InvalidDataset(
            f"{folder} has no class folders but several kinds of dataset files ({', '.join(files[:6])}); "
            "pass the path of the one to use"
        )
    if not by_format:
        return None
    ((fmt, files),) = by_format.items()
    suffixes = {Path(f).suffix for f in files}
    if fmt == "tfrecord" and len(files) > 1 and len(suffixes) == 1:
        return fmt, str(folder / f"*{suffixes.pop()}")
    if len(files) > 1:
        raise InvalidDataset(f"{folder} holds {len(files)} {fmt} files; pass the path of the one to use")
    return fmt, files[0]


def load_source(
    uri: str,
    fmt: str | None = None,
    image_root: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    check_classes: bool = True,
    label_format: str = "class-id",
    attribute_names: Sequence[str] | None = None,
) -> DataSource:
    """Parse and validate a dataset. ``check_classes=False`` allows missing classes (validation/test lists).

    ``label_format`` is how ``.lst`` label columns and RecordIO labels read (class ids, a multi-hot vector or
    ``auto``: :mod:`trainer_svc.data.labels`); TFRecord labels are class ids, class folders one class each.
    ``attribute_names``: an augmented manifest's image and label attributes (SageMaker's ``AttributeNames``).

    When the format is inferred, a folder without sub-folders that holds dataset files of one kind
    (a SageMaker channel with one ``train.rec``, say) is read as that file or, for TFRecords, as all
    of them.
    """
    if "://" in uri:
        scheme, _, rest = uri.partition("://")
        if scheme != "file":
            raise InvalidDataset(f"{uri}: only local paths are supported here; copy the data locally first")
        uri = rest
    if fmt is not None:
        fmt = _ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise InvalidArgument(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    else:
        fmt = infer_format(uri)
        if fmt == "folders" and (found := _channel_file(Path(uri))) is not None:
            fmt, uri = found
    if attribute_names and fmt != "manifest":
        raise InvalidArgument(f"attribute names apply to augmented manifests, not to {fmt} data")
    if fmt == "folders":
        from trainer_svc.data.folders import read_folders

        if class_names is not None:
            raise InvalidArgument("class folders name their classes; class_names cannot be given for them")
        return read_folders(uri)
    if fmt == "lst":
        from trainer_svc.data.lst import read_lst

        return read_lst(
            uri, image_root, class_names=class_names, check_classes=check_classes, label_format=label_format
        )
    if fmt == "manifest":
        from trainer_svc.data.manifest import read_manifest

        return read_manifest(
            uri,
            attribute_names=attribute_names,
            class_names=class_names,
            check_classes=check_classes,
            label_format=label_format,
        )
    if fmt == "rec":
        from trainer_svc.data.recordio import read_rec

        return read_rec(uri, class_names=class_names, check_classes=check_classes, label_format=label_format)
    from trainer_svc.data.tfrecord import read_tfrecord

    return read_tfrecord(uri, class_names=class_names, check_classes=check_classes)


def scan(source: DataSource, workers: int = 8) -> DataSource:
    """Decode every image once; undecodable ones move to ``skipped`` with the reason.

    Training then never meets a corrupt file halfway through an epoch. Afterwards every class must
    still have a sample and at least 2 classes must remain.
    """

    def check(sample: Sample) -> str | None:
        try:
            check_decodable(source.read(sample))
        except TficError as exc:
            return exc.message
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="scan") as pool:
        verdicts = list(pool.map(check, source.samples))
    good = [s for s, reason in zip(source.samples, verdicts, strict=True) if reason is None]
    new_skips = [SkippedSample(s.key, r) for s, r in zip(source.samples, verdicts, strict=True) if r is not None]
    _check_classes_remain(source, good, new_skips)
    result = source.with_samples(good)
    result.skipped = [*source.skipped, *new_skips]
    if new_skips:
        result.description = f"{source.description}; {len(new_skips)} undecodable skipped, {len(good)} left"
    return result


def _check_classes_remain(source: DataSource, good: list[Sample], skipped: list[SkippedSample]) -> None:
    present = {label for s in good for label in s.labels}
    before = {label for s in source.samples for label in s.labels}
    emptied = [i for i in sorted(before) if i not in present]
    if not good:
        raise InvalidDataset(f"none of the {len(source.samples)} images in {source.description} could be decoded")
    if emptied:
        names = ", ".join(repr(source.class_names[i]) for i in emptied)
        raise InvalidDataset(
            f"class {names} has no decodable images left ({len(skipped)} images were skipped; "
            f"first: {skipped[0].key}: {skipped[0].reason})"
        )
    if len(present) < 2:
        raise InvalidDataset(f"only one class has decodable images in {source.description}; at least 2 are needed")


def stratified_split(source: DataSource, ratio: float, seed: int) -> tuple[DataSource, DataSource]:
    """(train, validation) with about ``ratio`` of each class in validation, the same for the same seed.

    Every class with at least 2 samples gets at least 1 validation sample and keeps at least 1 for
    training; single-sample classes stay in training. Multi-label samples are stratified by their
    first label. Both parts keep the source's order.
    """
    if not 0.0 < ratio < 1.0:
        raise InvalidArgument(f"validation ratio must be between 0 and 1 (exclusive), got {ratio}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(source.samples):
        by_class[s.label].append(i)
    rng = random.Random(seed)
    validation: set[int] = set()
    for label in sorted(by_class):
        # Sort by key so the split does not depend on the order a reader listed files in.
        members = sorted(by_class[label], key=lambda i: source.samples[i].key)
        rng.shuffle(members)
        n = len(members)
        take = min(max(round(n * ratio), 1), n - 1) if n >= 2 else 0
        validation.update(members[:take])
    if not validation:
        raise InvalidDataset(f"cannot split {source.description}: no class has 2 or more samples")
    train = [s for i, s in enumerate(source.samples) if i not in validation]
    val = [s for i, s in enumerate(source.samples) if i in validation]
    train_source = source.with_samples(train)
    train_source.skipped = list(source.skipped)
    return train_source, source.with_samples(val)
