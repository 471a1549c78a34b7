"""Logging set-up, called once at each entry point (text for people, JSON for log pipelines)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

from tfic.settings import check, setting

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogSettings:
    """Logging, the same two settings for every service and command (``tfic --log-level`` and the services'
    own ``python -m`` entry points)."""

    ENV_PREFIX: ClassVar[str] = "TFIC_"
    level: str = setting("info", "log level", flag="--log-level", parse=str.lower, choices=LEVELS)
    format: str = setting("text", "text for people, json for log pipelines", flag="--log-format", choices=FORMATS)

    def __post_init__(self) -> None:
        check(self)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "model", "version", "job_id"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every log record to stderr at ``level``, as text or JSON (``fmt``)."""
    # TensorFlow's C++ logging is noisy on CPU-only machines; keep warnings and errors only.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
