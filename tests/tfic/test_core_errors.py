from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

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


# Every exception class of tfic and the status it must have. A new class fails the walk below until it is
# added here, so its status is a decision, not an accident of inheritance.
EXPECTED: dict[str, tuple[str, int]] = {
    "tfic.errors.TficError": ("INTERNAL", 500),
    "tfic.errors.InvalidArgument": ("INVALID_ARGUMENT", 400),
    "tfic.errors.InvalidImage": ("INVALID_ARGUMENT", 400),
    "tfic.errors.UnsupportedFormat": ("INVALID_ARGUMENT", 415),
    "tfic.errors.ImageTooLarge": ("INVALID_ARGUMENT", 413),
    "tfic.errors.InvalidHyperparameter": ("INVALID_ARGUMENT", 400),
    "tfic.errors.InvalidDataset": ("INVALID_ARGUMENT", 400),
    "tfic.errors.IncompatibleModel": ("INVALID_ARGUMENT", 400),
    "tfic.errors.NotFound": ("NOT_FOUND", 404),
    "tfic.errors.ModelNotFound": ("NOT_FOUND", 404),
    "tfic.errors.AlreadyExists": ("ALREADY_EXISTS", 409),
    "tfic.errors.PermissionDenied": ("PERMISSION_DENIED", 403),
    "tfic.errors.Unauthenticated": ("UNAUTHENTICATED", 401),
    "tfic.errors.FailedPrecondition": ("FAILED_PRECONDITION", 409),
    "tfic.errors.ResourceExhausted": ("RESOURCE_EXHAUSTED", 429),
    "tfic.errors.DeadlineExceeded": ("DEADLINE_EXCEEDED", 504),
    "tfic.errors.Unavailable": ("UNAVAILABLE", 503),
    "tfic.errors.Cancelled": ("CANCELLED", 499),
    "tfic.grpc_errors.UpstreamError": ("INTERNAL", 500),
    "gateway.errors.NotAcceptable": ("INVALID_ARGUMENT", 406),
    "gateway.errors.MethodNotAllowed": ("INVALID_ARGUMENT", 405),
    "gateway.errors.BodyTooLarge": ("INVALID_ARGUMENT", 413),
    "gateway.errors.RouteNotFound": ("NOT_FOUND", 404),
    "gateway.errors.RequestTimeout": ("DEADLINE_EXCEEDED", 408),
    "gateway.errors.TooManyConnections": ("RESOURCE_EXHAUSTED", 429),
    "gateway.errors.ConnectionLimit": ("UNAVAILABLE", 503),
    "tfic_cli.remote.ImageRejected": ("INTERNAL", 500),  # never leaves the CLI: reported per image
    "tfic_cli.extras.MissingExtra": ("INTERNAL", 500),
    "trainer_svc.backbones.base.WeightsUnavailable": ("FAILED_PRECONDITION", 409),
    "trainer_svc.backbones.torch_legacy.CheckpointError": ("INVALID_ARGUMENT", 400),
    "trainer_svc.training.rendezvous.StartupInterrupted": ("CANCELLED", 499),  # a signal while waiting for peers
}

# What an HTTP error body says in ``status`` where it is not the gRPC code's name: the HTTP statuses that are not
# their gRPC code's own (INVALID_ARGUMENT is 400 over HTTP, DEADLINE_EXCEEDED 504).
HTTP_NAMES = {
    "tfic.errors.UnsupportedFormat": "UNSUPPORTED_MEDIA_TYPE",
    "tfic.errors.ImageTooLarge": "CONTENT_TOO_LARGE",
    "gateway.errors.NotAcceptable": "NOT_ACCEPTABLE",
    "gateway.errors.MethodNotAllowed": "METHOD_NOT_ALLOWED",
    "gateway.errors.BodyTooLarge": "CONTENT_TOO_LARGE",
    "gateway.errors.RequestTimeout": "REQUEST_TIMEOUT",
}

PACKAGES = ("tfic", "tfic_cli", "tfic_demo", "trainer_svc", "inference_svc", "gateway")


def _modules_defining_exceptions() -> set[str]:
    """Modules of our packages with a class statement deriving from a tfic exception, found by reading the
    source (importing every module would pull in TensorFlow)."""
    root = Path(__file__).resolve().parents[2]
    names = {"TficError"}
    found: dict[str, set[str]] = {}
    sources = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if "v1" not in p.relative_to(root).parts]
    changed = True
    while changed:  # to a fixed point: a subclass of a subclass is found on a later pass
        changed = False
        for path in sources:
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef) or node.name in found.get(module, set()):
                    continue
                bases = {
                    b.id if isinstance(b, ast.Name) else b.attr
                    for b in node.bases
                    if isinstance(b, ast.Name | ast.Attribute)
                }
                if bases & names:
                    names.add(node.name)
                    found.setdefault(module, set()).add(node.name)
                    changed = True
    return set(found)


def _walk(cls: type[errors.TficError]) -> Iterator[type[errors.TficError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _walk(sub)


def test_every_exception_class_maps_where_it_should() -> None:
    modules = _modules_defining_exceptions()
    assert {"tfic.errors", "gateway.errors", "trainer_svc.backbones.base"} <= modules
    for module in modules:
        importlib.import_module(module)
    seen = {
        f"{cls.__module__}.{cls.__qualname__}": cls
        for cls in _walk(errors.TficError)
        if cls.__module__.split(".")[0] in PACKAGES  # not the test modules' own subclasses
    }
    assert set(seen) == set(EXPECTED)
    for name, cls in seen.items():
        status = errors.status_for_class(cls)
        assert (status.grpc_code, status.http_status) == EXPECTED[name], name
        assert status.name == HTTP_NAMES.get(name, status.grpc_code), name


def test_an_http_name_belongs_to_its_http_status() -> None:
    class Slow(errors.ImageTooLarge):  # the same 413: the same name
        pass

    class Other(errors.ImageTooLarge, http_status=400):  # another status: not 413's name
        pass

    assert errors.status_for_class(Slow).name == "CONTENT_TOO_LARGE"
    assert errors.status_for_class(Other) == errors.Status("INVALID_ARGUMENT", 400)
    assert errors.status_for_class(Other).name == "INVALID_ARGUMENT"
    assert errors.class_for_status_name("CONTENT_TOO_LARGE") is errors.ImageTooLarge
    assert errors.class_for_status_name("NOT_FOUND") is errors.NotFound
    assert errors.class_for_status_name("NO_SUCH_NAME") is None


def test_the_most_specific_entry_wins_and_subclasses_elsewhere_join_the_one_table() -> None:
    class Teapot(errors.ImageTooLarge, http_status=418):
        reason = "teapot"

    class Spout(Teapot):
        pass

    assert errors.TABLE[Teapot] == errors.Status("INVALID_ARGUMENT", 418)  # the gRPC code is inherited
    assert errors.status_for(Spout("x")) == errors.Status("INVALID_ARGUMENT", 418)
    assert errors.status_for(errors.ImageTooLarge("x")).http_status == 413  # the parent keeps its own
    assert errors.grpc_code_for_http(418) == "INVALID_ARGUMENT"
    assert errors.class_for(errors.InvalidArgument, "teapot") is Teapot
    assert errors.class_for(errors.NotFound, "teapot") is errors.NotFound  # a reason that does not fit the code


def test_reverse_lookups_read_the_same_table() -> None:
    assert errors.class_for_grpc_code("INVALID_ARGUMENT") is errors.InvalidArgument
    assert errors.class_for_grpc_code("NOT_FOUND") is errors.NotFound
    assert errors.class_for_grpc_code("INTERNAL") is None
    assert errors.class_for_grpc_code("DATA_LOSS") is None
    assert errors.class_for(errors.NotFound, "model_not_found") is errors.ModelNotFound
    assert errors.grpc_code_for_http(404) == "NOT_FOUND"
    assert errors.grpc_code_for_http(502) == "INTERNAL"
    assert errors.grpc_code_for_http(418 + 1) == "UNKNOWN"


def test_field_and_retry_delay() -> None:
    assert errors.InvalidHyperparameter("bad", name=" learning_rate").field == "hyperparameters.learning_rate"
    assert errors.InvalidHyperparameter("bad").field is None
    assert errors.ResourceExhausted("full").retry_after_seconds == 1.0
    assert errors.ResourceExhausted("full", retry_after_seconds=7).retry_after_seconds == 7
    assert errors.Unavailable("down").retry_after_seconds is None
    assert errors.InvalidImage("x", field="images[2]", model="m").details == {"model": "m"}
