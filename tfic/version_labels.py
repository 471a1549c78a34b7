"""Fleet-wide version labels: which version of a model is ``stable`` and which is ``canary``, in one small file
beside the versions, so every inference pod that reads the shared model repository serves the same thing.

TensorFlow Serving's ``version_labels`` (``version_labels { key: "stable" value: 3 }`` in a model config)
name versions per server; a file in the repository names them for the whole fleet, and moving a label is one
atomic file write that every pod picks up on its next poll. Layout::

    <model_base_path>/<model_name>/version_labels.json
    <model_base_path>/<model_name>/<version>/saved_model.pb ...

Contents (``format`` is this file's schema version; readers refuse a newer one)::

    {
      "format": 1,
      "labels": {"stable": 1, "canary": 2},
      "canary_share": 0.1,                      # optional: share of unlabelled requests the canary answers
      "validated": {"2": {"at": "...", "checks": ["loads", "predicts 8 images", ...]}},
      "history": [{"at": "...", "label": "canary", "from": null, "to": 2, "by": "promote"}]
    }

Writers (``tfic models promote`` / ``rollback``, the Trainer) take an exclusive ``fcntl`` lock on
``.version_labels.lock`` for the read-modify-write and publish with ``os.replace`` of a temporary file in
the same folder, so a reader sees the old file or the new one, never a partial one. The file's name is not
an integer, so TensorFlow Serving's own watcher ignores it.

This module is the file format only; it imports no service.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tfic.errors import FailedPrecondition, InvalidArgument

FILE_NAME = "version_labels.json"
LOCK_NAME = ".version_labels.lock"
FORMAT = 1
STABLE = "stable"
CANARY = "canary"
HISTORY_LIMIT = 100  # entries kept; older ones are dropped so the file stays small


@dataclass(frozen=True)
class LabelMove:
    at: str
    label: str
    previous: int | None
    version: int | None  # None: the label was removed
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "label": self.label, "from": self.previous, "to": self.version, "by": self.by}


@dataclass(frozen=True)
class VersionLabels:
    """The parsed file. ``labels`` maps a label to a version; ``canary_share`` None means the server's default."""

    labels: Mapping[str, int] = field(default_factory=dict)
    canary_share: float | None = None
    validated: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    history: tuple[LabelMove, ...] = ()

    @property
    def stable(self) -> int | None:
        return self.labels.get(STABLE)

    @property
    def canary(self) -> int | None:
        return self.labels.get(CANARY)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "labels": dict(sorted(self.labels.items()))}
        if self.canary_share is not None:
            out["canary_share"] = self.canary_share
        out["validated"] = {str(v): dict(r) for v, r in sorted(self.validated.items())}
        out["history"] = [m.to_json() for m in self.history[-HISTORY_LIMIT:]]
        return out


def check_label(label: str) -> str:
    if not label or not all(c.isalnum() or c in "_-" for c in label) or label[0].isdigit():
        raise InvalidArgument(
            f"invalid version label {label!r}: letters, digits, '_' and '-', not starting with a digit"
        )
    return label


def check_share(share: float) -> float:
    if not math.isfinite(share) or not 0.0 <= share <= 1.0:
        raise InvalidArgument(f"canary share must be between 0 and 1, got {share}")
    return share


def parse(text: str, where: str = FILE_NAME) -> VersionLabels:
    """The file's contents; InvalidArgument says what is wrong (the reader keeps its previous labels)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where} must hold a JSON object")
    fmt = data.get("format", FORMAT)
    if not isinstance(fmt, int) or fmt > FORMAT or fmt < 1:
        raise InvalidArgument(f"{where} has format {fmt!r}; this tfic reads format {FORMAT}")
    raw = data.get("labels", {})
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: 'labels' must be an object of label → version")
    labels: dict[str, int] = {}
    for label, version in raw.items():
        check_label(str(label))
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgument(f"{where}: label {label!r} must name a positive version, got {version!r}")
        labels[str(label)] = version
    share = data.get("canary_share")
    if share is not None:
        if isinstance(share, bool) or not isinstance(share, int | float):
            raise InvalidArgument(f"{where}: canary_share must be a number between 0 and 1")
        share = check_share(float(share))
    validated: dict[int, Mapping[str, Any]] = {}
    for key, record in (data.get("validated") or {}).items():
        if str(key).isdigit() and isinstance(record, dict):
            validated[int(key)] = record
    history = tuple(
        LabelMove(str(m.get("at", "")), str(m.get("label", "")), m.get("from"), m.get("to"), str(m.get("by", "")))
        for m in data.get("history") or []
        if isinstance(m, dict)
    )
    return VersionLabels(labels, share, validated, history)


def read(model_dir: Path) -> VersionLabels | None:
    """The labels of the model whose versions are in ``model_dir``; None when it has no labels file."""
    path = model_dir / FILE_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(text, str(path))


def write(model_dir: Path, labels: VersionLabels) -> None:
    """Publish ``labels`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    text = json.dumps(labels.to_json(), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".version_labels-", suffix=".tmp", dir=model_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from pods running as another user
        os.replace(tmp, model_dir / FILE_NAME)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(model_dir: Path) -> Iterator[VersionLabels]:
    """Hold the writers' lock and yield the current labels (empty when there is no file yet)."""
    if not model_dir.is_dir():
        raise FailedPrecondition(f"{model_dir} is not a model directory")
    with open(model_dir / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield read(model_dir) or VersionLabels()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def moved(current: VersionLabels, label: str, version: int | None, by: str) -> VersionLabels:
    """``current`` with ``label`` set to ``version`` (None removes it), the move recorded in the history."""
    labels = dict(current.labels)
    previous = labels.get(label)
    if version is None:
        labels.pop(label, None)
    else:
        labels[label] = version
    move = LabelMove(now(), label, previous, version, by)
    return replace(current, labels=labels, history=(*current.history, move)[-HISTORY_LIMIT:])


def previous_version(current: VersionLabels, label: str) -> int | None:
    """The version ``label`` named before its last move to its current version (what a rollback returns to)."""
    target = current.labels.get(label)
    for move in reversed(current.history):
        if move.label == label and move.version == target and move.previous is not None and move.previous != target:
            return int(move.previous)
    return None
