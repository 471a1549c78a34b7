"""The TF algorithm's layout: ``root/<class>/<image>``; class index = position in sorted folder names."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tfic.errors import InvalidDataset, NotFound
from tfic.imaging import IMAGE_SUFFIXES
from trainer_svc.data.source import FileSource, Sample, SkippedSample

IMAGE_EXTENSIONS = IMAGE_SUFFIXES


@dataclass
class ClassListing:
    """Images found under ``root``, per class, as paths relative to ``root`` (posix separators)."""

    root: Path
    class_names: tuple[str, ...]
    images: list[list[str]]
    skipped: list[SkippedSample]


def list_class_images(
    root: str | os.PathLike[str],
    exts: Iterable[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
) -> ClassListing:
    """List and validate ``root/<class>/...``: at least 2 classes, none empty. Hidden entries are ignored.

    With ``recursive`` (as TensorFlow's ``image_dataset_from_directory`` does), images in nested
    folders belong to the top-level class folder. Files with other extensions are reported in
    ``skipped`` rather than dropped silently.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise NotFound(f"dataset folder {root_path} does not exist")
    if not root_path.is_dir():
        raise InvalidDataset(f"{root_path} is not a folder; expected {root_path}/<class name>/<image files>")
    extensions = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in exts)
    skipped: list[SkippedSample] = []
    class_names: list[str] = []
    for entry in sorted(os.scandir(root_path), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            class_names.append(entry.name)
        else:
            skipped.append(SkippedSample(entry.name, "file is not inside a class folder"))
    if not class_names:
        raise InvalidDataset(
            f"{root_path} has no class folders; expected one folder per class, e.g. {root_path}/roses/1.jpg"
        )
    images = [_images_in(root_path, name, extensions, recursive, skipped) for name in class_names]
    if not any(images):
        raise InvalidDataset(
            f"{root_path} contains no images (looked for {', '.join(sorted(extensions))} inside the class folders)"
        )
    if len(class_names) < 2:
        raise InvalidDataset(
            f"{root_path} has only one class folder ({class_names[0]!r}); at least 2 classes are needed to train"
        )
    empty = [name for name, found in zip(class_names, images, strict=True) if not found]
    if empty:
        raise InvalidDataset(
            f"class folder(s) with no images in {root_path}: {', '.join(repr(n) for n in empty)} "
            f"(looked for {', '.join(sorted(extensions))})"
        )
    return ClassListing(root_path, tuple(class_names), images, skipped)


def _images_in(
    root: Path, class_name: str, extensions: frozenset[str], recursive: bool, skipped: list[SkippedSample]
) -> list[str]:
    found: list[str] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root / class_name, followlinks=True):
        # Class folders are often symlinked into place; following links needs a loop guard.
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = f"{rel_dir}/{name}"
            if os.path.splitext(name)[1].lower() in extensions:
                found.append(rel)
            else:
                skipped.append(SkippedSample(rel, "not an image file extension"))
    return found


def read_folders(root: str | os.PathLike[str]) -> FileSource:
    """Read ``root/<class>/<image>``; sample keys are paths relative to ``root`` so fingerprints are portable."""
    listing = list_class_images(root)
    base = os.path.abspath(listing.root)
    samples = [
        Sample(key=rel, labels=(index,), path=os.path.join(base, rel))
        for index, rels in enumerate(listing.images)
        for rel in rels
    ]
    return FileSource(
        samples=samples,
        class_names=listing.class_names,
        description=f"folders {listing.root}: {len(samples)} images in {len(listing.class_names)} classes",
        skipped=listing.skipped,
    )
