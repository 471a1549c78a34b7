"""Helpers shared by the servicers."""

from __future__ import annotations

import time
from typing import Any

from grpc import aio


def deadline_of(context: aio.ServicerContext[Any, Any]) -> float | None:
    """The call's deadline as a ``time.monotonic()`` value (None when the client set none)."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
