"""Pages of ``ListTrainingJobs``: the page size bounds and the opaque ``page_token`` (a cursor into the store)."""

from __future__ import annotations

import base64
import binascii
import json

from tfic.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_limit(page_size: int) -> int:
    """How many jobs a page holds when ``page_size`` is asked for (0: the default)."""
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {page_size}")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: int | None) -> str:
    if cursor is None:
        return ""
    return base64.urlsafe_b64encode(json.dumps({"before": cursor}).encode()).decode().rstrip("=")


def decode_token(token: str) -> int | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["before"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("invalid page_token; pass the next_page_token of the previous page") from None
