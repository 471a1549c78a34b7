"""The 1000 ImageNet-1k class names in index order (source and license: README.md beside this file)."""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib import resources

NUM_CLASSES = 1000
_FILE = "imagenet_classes.txt"


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """Line *i* of ``imagenet_classes.txt``: the WordNet lemma of class *i* (e.g. 285 ``Egyptian cat``)."""
    text = resources.files("trainer_svc.backbones").joinpath(_FILE).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise RuntimeError(f"{_FILE} holds {len(names)} names, expected {NUM_CLASSES}")
    return names


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The class names made unique for use as model labels: a repeated name gets `` (<index>)``.

    Only ``crane`` repeats (134, the bird, and 517, the machine).
    """
    names = imagenet_class_names()
    counts = Counter(names)
    return tuple(name if counts[name] == 1 else f"{name} ({i})" for i, name in enumerate(names))
