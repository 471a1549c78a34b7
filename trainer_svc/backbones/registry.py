"""Backbones by name (or SavedModel path): :func:`get_backbone` and :func:`list_backbones`.

Names are matched loosely (case, ``-``/``_``/spaces ignored: ``EfficientNet-Lite0`` is
``efficientnet_lite0``); a name that matches nothing is an ``InvalidArgument`` listing the available
ones, with a "did you mean" suggestion. Anything that looks like a path (has a ``/``, starts with
``.`` or ``~``, or is an existing directory) is loaded as a SavedModel backbone.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from tfic.errors import InvalidArgument, NotFound
from trainer_svc.backbones.base import Backbone

EFFICIENTNET_LITE0 = "efficientnet_lite0"
DEFAULT_BACKBONE = EFFICIENTNET_LITE0

# Canonical names, in the order list_backbones() shows them. Keep in sync with keras_apps.SPECS.
_NAMES: tuple[str, ...] = (
    EFFICIENTNET_LITE0,
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "resnet50",
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY = {_key(name): name for name in _NAMES}


def list_backbones() -> list[str]:
    """The registered backbone names (SavedModel paths are accepted too)."""
    return list(_NAMES)


def canonical_name(name: str) -> str | None:
    return _BY_KEY.get(_key(name))


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~")) or "://" in text


def get_backbone(name_or_path: str, *, weights: str | None = None) -> Backbone:
    """The backbone called ``name_or_path``, or the SavedModel directory at that path.

    ``weights``: ``None`` for the backbone's default (ImageNet for ``efficientnet_lite0``, random
    for the Keras applications), ``"imagenet"``, ``"random"`` or a weights file path. Not allowed
    with a SavedModel path, which carries its own weights.
    """
    text = name_or_path.strip()
    name = canonical_name(text) if text else None
    if name == EFFICIENTNET_LITE0:
        from trainer_svc.backbones import efficientnet_lite_backbone

        return efficientnet_lite_backbone.backbone(weights)
    if name is not None:
        from trainer_svc.backbones import keras_apps

        return keras_apps.backbone(name, weights)
    if text and (_looks_like_path(text) or Path(text).is_dir()):
        if "://" in text:
            raise InvalidArgument(f"backbone {text!r}: only local SavedModel directories are supported")
        if not Path(text).expanduser().exists():
            raise NotFound(f"backbone path {text!r} does not exist", path=text)
        if weights is not None:
            raise InvalidArgument("weights do not apply to a SavedModel backbone, which carries its own")
        from trainer_svc.backbones import hub

        return hub.backbone(text)
    close = difflib.get_close_matches(_key(text), list(_BY_KEY), n=1, cutoff=0.6)
    hint = f" (did you mean {_BY_KEY[close[0]]!r}?)" if close else ""
    raise InvalidArgument(
        f"unknown backbone {name_or_path!r}{hint}; available: {', '.join(_NAMES)}, or the path of a SavedModel "
        "directory",
        available=list(_NAMES),
    )
