"""Content negotiation per RFC 9110 §12: ``Content-Type`` of image requests and ``Accept`` of predictions.

The gateway produces four representations of a prediction (SageMaker's image-classification contracts)::

    application/json               [p0, p1, ...]
    application/json;verbose       {"probabilities": [...], "labels": [...], "predicted_label": "..."}
    application/jsonlines          {"prediction": [...]}\\n
    application/jsonlines;verbose  {"prediction": [...], "labels": [...], "predicted_label": "..."}\\n

Rules (see docs/gateway.md):

* Types, subtypes and parameter names are case-insensitive; parameters other than ``verbose`` and ``q``
  (``charset=utf-8`` and the like) are ignored. ``verbose`` may be bare (SageMaker's spelling) or
  ``verbose=true|false|1|0``; ``verbose=false`` is the same as no parameter.
* Each representation gets the ``q`` of the most specific Accept range that matches it: a range naming the
  representation exactly, then ``type/subtype`` with other parameters, then ``type/*``, then ``*/*``.
  ``q=0`` refuses it.
* The highest ``q`` wins; ties go to the most specific match, then to the range listed first, then to the
  configured default, then to the order above.
* A missing or empty Accept header, or one with only ``*/*``, gets the configured default.
  When nothing acceptable remains the gateway answers 406.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from gateway.errors import NotAcceptable
from tfic.errors import InvalidArgument, UnsupportedFormat


class ResponseFormat(enum.Enum):
    JSON = ("application/json", False)
    JSON_VERBOSE = ("application/json", True)
    JSONLINES = ("application/jsonlines", False)
    JSONLINES_VERBOSE = ("application/jsonlines", True)

    def __init__(self, media_type: str, verbose: bool) -> None:
        self.media_type = media_type
        self.verbose = verbose

    @property
    def name_with_params(self) -> str:
        return self.media_type + (";verbose" if self.verbose else "")

    @property
    def content_type(self) -> str:
        """The response's Content-Type (the verbose forms are still plain JSON documents)."""
        return self.media_type


FORMATS: tuple[str, ...] = tuple(f.name_with_params for f in ResponseFormat)

# Request bodies the invocation routes take: one encoded image.
IMAGE_CONTENT_TYPES: tuple[str, ...] = ("application/x-image", "image/jpeg", "image/png")

_TRUE = frozenset({"", "true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    verbose: bool | None  # None: the range says nothing about verbosity
    q: float
    index: int  # position in the Accept header

    def precision(self, fmt: ResponseFormat) -> int:
        """How specifically this range matches ``fmt``: -1 no match, 0 ``*/*`` … 3 exactly."""
        ftype, fsub = fmt.media_type.split("/")
        if self.type == "*":
            return 0 if self.subtype == "*" else -1
        if self.type != ftype:
            return -1
        if self.subtype == "*":
            return 1
        if self.subtype != fsub:
            return -1
        if self.verbose is None:
            return 3 if not fmt.verbose else 2
        return 3 if self.verbose == fmt.verbose else -1


def _split(header: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double-quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in header:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def _parse_qvalue(text: str) -> float | None:
    """``qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )``; None when malformed."""
    return float(text) if _QVALUE.fullmatch(text) else None


def _parse_verbose(value: str | None) -> bool | None:
    text = "" if value is None else value.strip('"').lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def parse_media_type(text: str) -> tuple[str, str, dict[str, str | None]] | None:
    """``type/subtype; name=value; flag`` → lower-cased type, subtype and parameters; None when malformed."""
    pieces = _split(text, ";")
    full = pieces[0].strip().lower()
    if full.count("/") != 1:
        return None
    mtype, subtype = full.split("/")
    if not _is_token(mtype) or not _is_token(subtype) or (mtype == "*" and subtype != "*"):
        return None
    params: dict[str, str | None] = {}
    for raw in pieces[1:]:
        item = raw.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not _is_token(name):
            return None
        params.setdefault(name, value.strip() if eq else None)
    return mtype, subtype, params


def parse_accept(header: str) -> list[MediaRange]:
    """The well-formed ranges of an Accept header, in order; malformed elements are skipped."""
    ranges: list[MediaRange] = []
    for index, element in enumerate(_split(header, ",")):
        if not element.strip():
            continue
        parsed = parse_media_type(element)
        if parsed is None:
            continue
        mtype, subtype, params = parsed
        q = 1.0
        if "q" in params:
            qv = _parse_qvalue((params["q"] or "").strip('"'))
            if qv is None:
                continue
            q = qv
        verbose = _parse_verbose(params["verbose"]) if "verbose" in params else None
        ranges.append(MediaRange(mtype, subtype, verbose, q, index))
    return ranges


def parse_format(text: str) -> ResponseFormat:
    """One of :data:`FORMATS` (as configured for the default), parameters parsed like Accept's."""
    parsed = parse_media_type(text)
    if parsed is not None:
        mtype, subtype, params = parsed
        verbose = bool(_parse_verbose(params["verbose"])) if "verbose" in params else False
        for fmt in ResponseFormat:
            if fmt.media_type == f"{mtype}/{subtype}" and fmt.verbose == verbose:
                return fmt
    raise InvalidArgument(f"unsupported response type {text!r}; use one of {', '.join(FORMATS)}")


# Clients send the same few Accept and Content-Type headers over and over: parse each once. Bounded, so
# headers that vary per request cost a parse, not memory; refusals raise and are not cached.
_PARSED_HEADERS_CACHED = 256


@functools.lru_cache(maxsize=_PARSED_HEADERS_CACHED)
def negotiate(accept: str | None, default: ResponseFormat) -> ResponseFormat:
    """The representation to send for an Accept header; raises :class:`NotAcceptable`."""
    if accept is None or not accept.strip():
        return default
    ranges = parse_accept(accept)
    best: tuple[float, int, int, int, int] | None = None
    chosen: ResponseFormat | None = None
    order = list(ResponseFormat)
    for fmt in order:
        match: MediaRange | None = None
        precision = -1
        for r in ranges:
            p = r.precision(fmt)
            # The most specific range decides; among equally specific ones the first listed.
            if p > precision:
                match, precision = r, p
        if match is None or match.q <= 0.0:
            continue
        key = (match.q, precision, -match.index, int(fmt is default), -order.index(fmt))
        if best is None or key > best:
            best, chosen = key, fmt
    if chosen is None:
        raise NotAcceptable(
            f"cannot produce any type in Accept: {accept!r}; this endpoint produces {', '.join(FORMATS)}"
        )
    return chosen


@functools.lru_cache(maxsize=_PARSED_HEADERS_CACHED)
def check_image_content_type(header: str | None) -> str:
    """The lower-cased media type of an image request body; raises :class:`UnsupportedFormat` (415)."""
    allowed = ", ".join(IMAGE_CONTENT_TYPES)
    if header is None or not header.strip():
        raise UnsupportedFormat(f"missing Content-Type; send the encoded image as one of {allowed}")
    parsed = parse_media_type(header)
    media_type = f"{parsed[0]}/{parsed[1]}" if parsed is not None else None
    if media_type not in IMAGE_CONTENT_TYPES:
        raise UnsupportedFormat(f"unsupported Content-Type {header!r}; send the encoded image as one of {allowed}")
    return media_type


def check_json_content_type(header: str | None) -> None:
    """TensorFlow Serving's REST bodies are JSON; a missing type is accepted as TF Serving does."""
    if header is None or not header.strip():
        return
    parsed = parse_media_type(header)
    if parsed is None or (parsed[0], parsed[1]) != ("application", "json"):
        raise UnsupportedFormat(f"unsupported Content-Type {header!r}; send application/json")
