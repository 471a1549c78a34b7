"""What MXNet's ``im2rec.py`` does, without MXNet or OpenCV: folders → .lst → .rec, and back.

Differences from im2rec, on purpose: classes are the top-level folders of ``root`` (im2rec makes
every nested folder its own class), the train/val/test split is stratified per class, and images
that cannot be decoded are returned as skipped instead of only being printed.
"""

from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tfic.errors import AlreadyExists, InvalidArgument, InvalidDataset, TficError
from tfic.imaging import open_image, to_rgb
from trainer_svc.data.classnames import LABELS_JSON, find_class_names, write_class_names
from trainer_svc.data.folders import IMAGE_EXTENSIONS, list_class_images
from trainer_svc.data.lst import LstRow, parse_lst, resolve_images, write_lst
from trainer_svc.data.recordio import RecordIOWriter, pack_image, read_rec
from trainer_svc.data.source import SkippedSample

_ENCODINGS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass(frozen=True)
class ListResult:
    lists: dict[str, Path]  # "all", or "train"/"val"/"test" → the .lst written
    counts: dict[str, int]
    class_names: tuple[str, ...]
    names_file: Path
    skipped: list[SkippedSample] = field(default_factory=list)


@dataclass(frozen=True)
class ConvertResult:
    outputs: list[Path]
    written: int
    skipped: list[SkippedSample] = field(default_factory=list)


def make_lst(
    root: str | os.PathLike[str],
    prefix: str | os.PathLike[str],
    *,
    recursive: bool = True,
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    shuffle: bool = True,
    seed: int = 100,
    exts: Iterable[str] = IMAGE_EXTENSIONS,
) -> ListResult:
    """Write ``prefix.lst`` (train_ratio 1) or ``prefix_train.lst``/``_val.lst``/``_test.lst``, plus labels.json.

    Indices are assigned in sorted (class, path) order before shuffling, so they are unique across
    the split files and the same for the same folder.
    """
    if not 0.0 < train_ratio <= 1.0 or not 0.0 <= test_ratio < 1.0 or train_ratio + test_ratio > 1.0 + 1e-9:
        raise InvalidArgument(
            f"need 0 < train_ratio <= 1, 0 <= test_ratio < 1 and train_ratio + test_ratio <= 1; "
            f"got {train_ratio} and {test_ratio}"
        )
    listing = list_class_images(root, exts, recursive)
    rng = random.Random(seed)
    splits: dict[str, list[LstRow]] = {"train": [], "val": [], "test": []}
    index = 0
    for label, rels in enumerate(listing.images):
        rows = [LstRow(index + i, (label,), rel) for i, rel in enumerate(rels)]
        index += len(rows)
        if shuffle:
            rng.shuffle(rows)
        n_train, n_val, _ = _allocate(len(rows), train_ratio, test_ratio)
        splits["train"] += rows[:n_train]
        splits["val"] += rows[n_train : n_train + n_val]
        splits["test"] += rows[n_train + n_val :]
    out = _strip(Path(prefix), ".lst")
    out.parent.mkdir(parents=True, exist_ok=True)
    names_file = _place_class_names(out.parent, listing.class_names)
    if train_ratio >= 1.0:
        splits = {"all": splits["train"]}
    lists: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for name, rows in splits.items():
        if not rows:
            continue
        if shuffle:
            # One class after another would starve MXNet-style sequential readers of variety.
            rng.shuffle(rows)
        path = out.parent / (f"{out.name}.lst" if name == "all" else f"{out.name}_{name}.lst")
        counts[name] = write_lst(path, rows)
        lists[name] = path
    return ListResult(lists, counts, listing.class_names, names_file, listing.skipped)


def _strip(prefix: Path, suffix: str) -> Path:
    return prefix.with_suffix("") if prefix.suffix == suffix else prefix


def _allocate(n: int, train_ratio: float, test_ratio: float) -> tuple[int, int, int]:
    """(train, val, test) counts for one class: held-out parts get ≥1 when asked for, training keeps ≥1."""
    val_ratio = max(0.0, 1.0 - train_ratio - test_ratio)
    n_test = max(round(n * test_ratio), 1) if test_ratio > 0 else 0
    n_val = max(round(n * val_ratio), 1) if val_ratio > 1e-9 else 0
    while n_test + n_val > n - 1 and n_test + n_val > 0:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def _place_class_names(directory: Path, names: Sequence[str]) -> Path:
    """Write labels.json into ``directory``, refusing to replace one that names other classes."""
    path = directory / LABELS_JSON
    found = find_class_names(directory)
    if found is not None and found[0] != tuple(names):
        raise AlreadyExists(
            f"{found[1]} already names other classes ({', '.join(found[0][:5])}...); "
            "write these files to a different folder"
        )
    write_class_names(path, names)
    return path


@dataclass(frozen=True)
class _EncodeOptions:
    resize: int
    quality: int
    image_format: str
    center_crop: bool
    pass_through: bool


def _encode(path: str, opts: _EncodeOptions) -> bytes | str:
    """The bytes to store for one image, or the reason it cannot be stored."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if opts.pass_through:
            return data
        img = open_image(data)
        img.load()
        rgb = to_rgb(img)
    except TficError as exc:
        return exc.message
    except (OSError, ValueError, SyntaxError) as exc:
        return f"cannot decode: {exc}"
    if opts.center_crop:
        width, height = rgb.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side))
    if opts.resize:
        width, height = rgb.size
        scale = opts.resize / min(width, height)
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if opts.image_format == "JPEG":
        rgb.save(buf, "JPEG", quality=opts.quality)
    else:
        # im2rec reads --quality as the PNG compression level (0-9) for PNG output.
        rgb.save(buf, "PNG", compress_level=opts.quality if opts.quality <= 9 else 6)
    return buf.getvalue()


def make_rec(
    lst_path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    prefix: str | os.PathLike[str] | None = None,
    *,
    resize: int = 0,
    quality: int = 95,
    encoding: str = ".jpg",
    center_crop: bool = False,
    pass_through: bool = False,
    workers: int = 4,
) -> ConvertResult:
    """Pack the images of a .lst into ``prefix.rec`` + ``prefix.idx`` (keys are the .lst indices).

    ``resize`` > 0 scales the shorter side to that many pixels; ``center_crop`` first crops to a
    centred square; ``pass_through`` stores the files' bytes as they are. ``image_root`` defaults to
    the .lst's folder, ``prefix`` to the .lst's path without ``.lst``.
    """
    lst = Path(lst_path)
    image_format = _ENCODINGS.get(encoding.lower())
    if image_format is None:
        raise InvalidArgument(f"encoding must be one of {', '.join(_ENCODINGS)}, got {encoding!r}")
    lowest_quality = 1 if image_format == "JPEG" else 0  # PNG compression level 0 = none
    if not lowest_quality <= quality <= 100 or resize < 0:
        raise InvalidArgument(
            f"need {lowest_quality} <= quality <= 100 and resize >= 0; got quality {quality}, resize {resize}"
        )
    # A multi-hot list's rows are packed as the class ids they set (readers take either format).
    rows = parse_lst(lst, label_format="auto")
    paths = resolve_images(rows, lst, image_root)
    out = _strip(Path(prefix), ".rec") if prefix is not None else lst.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = find_class_names(lst.parent)
    if names is not None and out.parent.resolve() != lst.parent.resolve():
        _place_class_names(out.parent, names[0])
    opts = _EncodeOptions(resize, quality, image_format, center_crop, pass_through)
    rec_path = out.parent / f"{out.name}.rec"
    skipped: list[SkippedSample] = []
    written = 0
    chunk = max(1, workers) * 16  # bounds the encoded images held in memory at once
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, RecordIOWriter(rec_path) as writer:
        for start in range(0, len(rows), chunk):
            batch = list(zip(rows[start : start + chunk], paths[start : start + chunk], strict=True))
            for (row, _), encoded in zip(batch, pool.map(lambda rp: _encode(rp[1], opts), batch), strict=True):
                if isinstance(encoded, str):
                    skipped.append(SkippedSample(row.path, encoded))
                    continue
                label: float | list[float] = float(row.labels[0]) if len(row.labels) == 1 else list(row.labels)
                writer.write(pack_image(encoded, label, id=row.index), key=row.index)
                written += 1
        outputs = [rec_path, writer.idx_path] if writer.idx_path else [rec_path]
    return ConvertResult(outputs, written, skipped)


def _extension(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data.startswith(b"BM"):
        return ".bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None


def _empty_output(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise AlreadyExists(f"output folder {out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)


def rec_to_folder(rec_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> ConvertResult:
    """Unpack a .rec into ``out_dir/<class name>/<record id>.<ext>`` (the folders layout).

    Without a names file the classes are numbers; they are zero-padded ("02", "10") so that the
    folder reader's alphabetical order gives back the same indices. Named classes keep their names,
    and get the index of their alphabetical position when read back as folders.
    """
    source = read_rec(rec_path, check_classes=False)
    if source.multi_label:
        raise InvalidDataset(f"{rec_path} has multi-label records, which class folders cannot hold; use rec_to_lst")
    folders = list(source.class_names)
    if folders == [str(i) for i in range(len(folders))]:
        width = len(str(len(folders) - 1))
        folders = [f"{i:0{width}d}" for i in range(len(folders))]
    for name in folders:
        if name.startswith(".") or re.search(r"[/\\\0]", name):
            raise InvalidDataset(f"class name {name!r} cannot be a folder name")
    out = Path(out_dir)
    _empty_output(out)
    skipped: list[SkippedSample] = []
    written: list[Path] = []
    for sample in source.samples:
        data = source.read(sample)
        ext = _extension(data)
        if ext is None:
            skipped.append(SkippedSample(sample.key, "record does not hold a JPEG, PNG, GIF, BMP or WebP image"))
            continue
        folder = out / folders[sample.label]
        folder.mkdir(exist_ok=True)
        target = _unique(folder, _record_name(sample.key), ext, sample.offset)
        target.write_bytes(data)
        written.append(target)
    return ConvertResult([out], len(written), skipped)


def rec_to_lst(rec_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> ConvertResult:
    """Unpack a .rec into ``out_dir/images/<record id>.<ext>`` + ``out_dir/<rec name>.lst`` + labels.json."""
    source = read_rec(rec_path, check_classes=False)
    out = Path(out_dir)
    _empty_output(out)
    (out / "images").mkdir()
    names = [_record_name(s.key) for s in source.samples]
    use_ids = all(n.isdigit() for n in names) and len(set(names)) == len(names)
    rows: list[LstRow] = []
    skipped: list[SkippedSample] = []
    for i, (sample, name) in enumerate(zip(source.samples, names, strict=True)):
        data = source.read(sample)
        ext = _extension(data)
        if ext is None:
            skipped.append(SkippedSample(sample.key, "record does not hold a JPEG, PNG, GIF, BMP or WebP image"))
            continue
        target = _unique(out / "images", name, ext, sample.offset)
        target.write_bytes(data)
        rows.append(LstRow(int(name) if use_ids else i, sample.labels, f"images/{target.name}"))
    lst_path = out / f"{Path(rec_path).stem}.lst"
    write_lst(lst_path, rows)
    names_file = out / LABELS_JSON
    write_class_names(names_file, source.class_names)
    return ConvertResult([lst_path, names_file, out / "images"], len(rows), skipped)


def _record_name(key: str) -> str:
    ident = key.partition("#")[2].rpartition("@")[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ident).lstrip(".") or "record"


def _unique(folder: Path, name: str, ext: str, offset: int) -> Path:
    target = folder / f"{name}{ext}"
    return target if not target.exists() else folder / f"{name}_{offset}{ext}"
