from __future__ import annotations

import pytest

from tfic import errors


@pytest.mark.parametrize(
    ("exc", "grpc_code", "http"),
    [
        (errors.InvalidImage("x"), "INVALID_ARGUMENT", 400),
        (errors.UnsupportedFormat("x"), "INVALID_ARGUMENT", 415),
        (errors.ImageTooLarge("x"), "INVALID_ARGUMENT", 413),
        (errors.InvalidHyperparameter("x"), "INVALID_ARGUMENT", 400),
        (errors.ModelNotFound("x"), "NOT_FOUND", 404),
        (errors.AlreadyExists("x"), "ALREADY_EXISTS", 409),
        (errors.PermissionDenied("x"), "PERMISSION_DENIED", 403),
        (errors.ResourceExhausted("x"), "RESOURCE_EXHAUSTED", 429),
        (errors.DeadlineExceeded("x"), "DEADLINE_EXCEEDED", 504),
        (errors.Unavailable("x"), "UNAVAILABLE", 503),
        (errors.TficError("x"), "INTERNAL", 500),
        (ValueError("secret detail"), "INTERNAL", 500),
    ],
)
def test_status_is_looked_up_along_the_class_hierarchy(exc: Exception, grpc_code: str, http: int) -> None:
    status = errors.status_for(exc)
    assert (status.grpc_code, status.http_status) == (grpc_code, http)


def test_internal_errors_never_leak_their_text() -> None:
    assert errors.public_message(ValueError("password=hunter2")) == errors.INTERNAL_MESSAGE
    assert errors.public_message(errors.TficError("internal detail")) == errors.INTERNAL_MESSAGE
    assert errors.public_message(errors.InvalidImage("image is empty (0 bytes)")) == "image is empty (0 bytes)"
