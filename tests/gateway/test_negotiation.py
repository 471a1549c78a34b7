"""Content negotiation rules (RFC 9110 §12.5.1 Accept, §8.3 Content-Type) as the gateway applies them."""

from __future__ import annotations

import pytest

from gateway.errors import NotAcceptable
from gateway.negotiation import (
    ResponseFormat,
    check_image_content_type,
    check_json_content_type,
    negotiate,
    parse_accept,
    parse_format,
)
from tfic.errors import InvalidArgument, UnsupportedFormat

J, JV, JL, JLV = (
    ResponseFormat.JSON,
    ResponseFormat.JSON_VERBOSE,
    ResponseFormat.JSONLINES,
    ResponseFormat.JSONLINES_VERBOSE,
)


@pytest.mark.parametrize(
    ("accept", "default", "expected"),
    [
        (None, J, J),
        ("", JV, JV),
        ("   ", JL, JL),
        ("*/*", J, J),
        ("*/*", JV, JV),
        ("*/*", JL, JL),
        ("application/*", JL, JL),
        ("application/json", JV, J),
        ("Application/JSON", JV, J),
        ("application/json; charset=utf-8", JV, J),
        ("application/json;verbose", J, JV),
        ("application/json; verbose", J, JV),
        ("application/json;verbose=true", J, JV),
        ('application/json;verbose="1"', J, JV),
        ("application/json;verbose=false", JV, J),
        ("application/json;VERBOSE", J, JV),
        ("application/jsonlines", J, JL),
        ("application/jsonlines;verbose", J, JLV),
        # q-values: the highest wins, whatever the order.
        ("application/json;q=0.5, application/jsonlines", J, JL),
        ("application/jsonlines;q=0.2, application/json;verbose;q=0.9", J, JV),
        ("application/json;verbose;q=0.5, application/json", J, J),
        ("application/json, application/json;verbose;q=0.5", JV, J),
        # q=0 refuses a type: the most specific matching range decides.
        ("application/json;q=0, */*", J, JL),
        ("application/json;q=0, application/json;verbose", J, JV),
        ("*/*;q=0.1, application/jsonlines;q=0", J, J),
        # Equal q: the more specific match, then the range listed first.
        ("*/*, application/jsonlines", J, JL),
        ("application/jsonlines, application/json", JV, JL),
        ("application/json, application/jsonlines", JL, J),
        # Malformed elements are skipped, the rest still counts.
        ("garbage, application/jsonlines", J, JL),
        ("application/json;q=2, application/jsonlines;q=0.5", J, JL),
        ("application/json;q=0.1234, application/jsonlines;q=0.001", J, JL),
        ("text/html, application/*;q=0.8", JV, JV),
    ],
)
def test_negotiate(accept: str | None, default: ResponseFormat, expected: ResponseFormat) -> None:
    assert negotiate(accept, default) is expected


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "image/*",
        "application/xml, text/csv",
        "application/json;q=0",
        "application/json;q=0, application/jsonlines;q=0",
        "*/*;q=0",
        "garbage",
        "application/json;verbose=maybe;q=0",
    ],
)
def test_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable, match="cannot produce"):
        negotiate(accept, J)


def test_quoted_commas_do_not_split_ranges() -> None:
    ranges = parse_accept('application/json;foo="a,b";q=0.5, application/jsonlines')
    assert [(r.subtype, r.q) for r in ranges] == [("json", 0.5), ("jsonlines", 1.0)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("application/json", J),
        ("application/json;verbose", JV),
        ("application/jsonlines", JL),
        ("application/jsonlines; verbose=true", JLV),
    ],
)
def test_parse_format(text: str, expected: ResponseFormat) -> None:
    assert parse_format(text) is expected


@pytest.mark.parametrize("text", ["text/csv", "*/*", "application/x-image", "json"])
def test_parse_format_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="unsupported response type"):
        parse_format(text)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/x-image", "application/x-image"),
        ("image/jpeg", "image/jpeg"),
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("image/jpeg; quality=90", "image/jpeg"),
    ],
)
def test_image_content_types(header: str, expected: str) -> None:
    assert check_image_content_type(header) == expected


@pytest.mark.parametrize("header", [None, "", "text/plain", "image/gif", "application/json", "image/*", "x"])
def test_unsupported_image_content_types(header: str | None) -> None:
    with pytest.raises(UnsupportedFormat, match="Content-Type"):
        check_image_content_type(header)


def test_json_content_type() -> None:
    check_json_content_type(None)
    check_json_content_type("application/json; charset=utf-8")
    with pytest.raises(UnsupportedFormat):
        check_json_content_type("text/plain")
