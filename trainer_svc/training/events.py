"""Training events: what the CLI prints and logs, and what the Trainer service streams.

Every event is a JSON-serialisable dict with a ``type``: ``start`` (hyperparameters), ``data``
(dataset summary and skipped files), ``recipe`` (the phases that will run), ``features`` (the
frozen backbone's features computed once), ``base`` (incremental training: the base version's own
validation result, epoch 0), ``epoch`` (metrics, phase, learning rates), ``checkpoint``,
``early_stopping`` (when and why), ``report`` (multi-label: the published weights' per-class
precision/recall/F1/average precision and mAP on validation), ``model`` (the published version and the
epoch it comes from), ``stopped``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

Event = dict[str, Any]
EventSink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    del event


def describe(event: Event) -> str:
    """One line for people: what ``tfic train`` prints and what ``tfic jobs watch`` shows."""
    d, kind = event, event.get("type")
    if kind == "start":
        return f"training started (model {d.get('model_name', '?')})"
    if kind == "data":
        skipped = d.get("skipped") or []
        extra = f", {len(skipped)} unreadable images skipped" if skipped else ""
        return (
            f"data: {len(d.get('classes') or [])} classes, {d.get('train_images', 0)} training and "
            f"{d.get('validation_images', 0)} validation images{extra}"
        )
    if kind == "recipe":
        phases = ", then ".join(f"{p['name']} for {p['epochs']} epochs" for p in d.get("phases") or [])
        return f"recipe: {phases}; publishing the {d.get('export_epoch')} epoch"
    if kind == "features":
        return (
            f"backbone features of {d.get('images')} images computed once in {float(d.get('seconds', 0)):.1f} s; "
            "frozen-backbone epochs train the head on them"
        )
    if kind == "base":
        accuracy = float((d.get("metrics") or {}).get("val_accuracy", 0.0))
        return f"base version (epoch 0): val_accuracy={accuracy:.4f}"
    if kind == "epoch":
        shown = " ".join(f"{k}={float(v):.4f}" for k, v in (d.get("metrics") or {}).items())
        phase = f" [{d['phase']}]" if d.get("phase") else ""
        speed = f" ({float(d['images_per_second']):.0f} img/s)" if "images_per_second" in d else ""
        return f"epoch {d.get('epoch')}/{d.get('epochs')}{phase} {shown}{speed}"
    if kind == "report":
        return (
            f"{d.get('split', 'validation')} (multi-label, threshold {d.get('threshold')}): "
            f"mAP={float(d.get('mean_average_precision', 0)):.4f} micro_f1={float(d.get('micro_f1', 0)):.4f} "
            f"macro_f1={float(d.get('macro_f1', 0)):.4f} exact_match={float(d.get('subset_accuracy', 0)):.4f}"
        )
    if kind == "checkpoint":
        return f"checkpoint saved after epoch {d.get('epoch')}"
    if kind == "early_stopping":
        return f"early stopping after epoch {d.get('epoch')}: {d.get('reason')}"
    if kind == "model":
        exported = d.get("exported_epoch")
        epoch = "" if exported is None else f" (epoch {exported}{': the base version' if exported == 0 else ''})"
        return f"published {d.get('model_name')} version {d.get('version')} at {d.get('path')}{epoch}"
    if kind == "stopped":
        return "training stopped before it finished; no model version was published"
    return f"{kind}: {json.dumps({k: v for k, v in d.items() if k != 'type'}, sort_keys=True)}"


class JsonLinesSink:
    """Append one JSON object per event to a file (the machine-readable training log)."""

    def __init__(self, path: str | Path | None = None, stream: TextIO | None = None) -> None:
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115 - closed by close()
        self._stream = stream

    def __call__(self, event: Event) -> None:
        line = json.dumps({"time": round(time.time(), 3), **event}, sort_keys=True)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        if self._stream is not None:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def fan_out(*sinks: EventSink) -> EventSink:
    def sink(event: Event) -> None:
        for s in sinks:
            s(event)

    return sink
