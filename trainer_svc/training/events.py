"""Training events: what the CLI prints and logs, and what the Trainer service streams.

Every event is a JSON-serialisable dict with a ``type``: ``start``, ``data`` (dataset summary and
skipped files), ``epoch`` (metrics), ``checkpoint``, ``model`` (the published version), ``done``.
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
