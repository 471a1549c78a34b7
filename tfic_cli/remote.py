"""``tfic predict --server HOST:PORT`` (gRPC Classify) and ``tfic predict --gateway URL`` (HTTP).

Prints what local ``tfic predict`` prints: for one image file, ``{"probabilities", "labels",
"predicted_label"}``; for several images or a folder, one JSON line per image with its ``source`` (an
unreadable or rejected image gets ``{"source", "error"}`` and the exit code becomes 1). Requests run a few
at a time; results print in input order. Errors that concern the whole run (unknown model, service
unreachable) stop it with the service's message. TensorFlow is not imported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tfic.errors import (
    InvalidArgument,
    NotFound,
    TficError,
    Unavailable,
    class_for,
    class_for_status_name,
    grpc_code_for_http,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
CONCURRENCY = 8
TIMEOUT_SECONDS = 60.0
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

Classify = Callable[[bytes, Path], dict[str, Any]]


class ImageRejected(TficError):
    """The service refused this one image (corrupt, unsupported, too large): reported per image."""


def list_images(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    raise NotFound(f"{target} does not exist")


# --- gRPC -------------------------------------------------------------------------------------------------


def _grpc_error(exc: Any, where: str) -> TficError:
    """The shared mapping (:func:`tfic.grpc_errors.exception_from_rpc`, which reads the call's
    ``google.rpc.Status``); a refused image is reported per image."""
    from tfic.grpc_errors import exception_from_rpc

    error = exception_from_rpc(exc, service=f"the inference service at {where}")
    if isinstance(error, InvalidArgument):
        return ImageRejected(error.message)
    error.message = f"{where}: {error.message}"
    return error


def _grpc_classifier(args: argparse.Namespace) -> tuple[Classify, Callable[[], None]]:
    import grpc

    from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

    channel = grpc.insecure_channel(args.server)
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    name = args.model_name
    if not name:
        try:
            models = stub.ListModels(classifier_pb2.ListModelsRequest(), timeout=TIMEOUT_SECONDS).models
        except grpc.RpcError as exc:
            channel.close()
            raise _grpc_error(exc, args.server) from None
        names = sorted(m.name for m in models)
        if len(names) != 1:
            channel.close()
            raise InvalidArgument(
                f"{args.server} serves {len(names)} models ({', '.join(names) or 'none'}); choose one with --model-name"
            )
        name = names[0]

    def classify(data: bytes, path: Path) -> dict[str, Any]:
        request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=name), images=[data], top_k=args.top_k)
        try:
            response = stub.Classify(request, timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise _grpc_error(exc, args.server) from None
        result = response.results[0]
        return {
            "probabilities": list(result.probabilities),
            "labels": list(result.labels),
            "predicted_label": result.predicted_label,
        }

    return classify, channel.close


# --- HTTP -------------------------------------------------------------------------------------------------


def _http_error(response: Any, where: str) -> TficError:
    """The gateway's JSON error as the exception class its ``status`` and ``reason`` name (the same lookup as
    for gRPC); a refused image is reported per image."""
    try:
        error = response.json()["error"]
        message, status_name, reason = str(error["message"]), str(error["status"]), error.get("reason")
    except Exception:  # not the gateway's body (a proxy's page): the status alone, read backwards from the table
        message, reason = response.text.strip() or response.reason_phrase, None
        status_name = grpc_code_for_http(response.status_code)
    if response.status_code in (400, 413, 415):  # the image's fault, not the run's (a 405 or 406 would be ours)
        return ImageRejected(message)
    base = class_for_status_name(status_name) or TficError
    return class_for(base, reason)(f"{where}: HTTP {response.status_code}: {message}")


def _http_classifier(args: argparse.Namespace) -> tuple[Classify, Callable[[], None]]:
    import httpx

    base = args.gateway.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    url = f"{base}/models/{args.model_name}/invocations" if args.model_name else f"{base}/invocations"
    client = httpx.Client(timeout=TIMEOUT_SECONDS)
    params = {"top_k": str(args.top_k)} if args.top_k else {}

    def classify(data: bytes, path: Path) -> dict[str, Any]:
        headers = {
            "Content-Type": _CONTENT_TYPES.get(path.suffix.lower(), "application/x-image"),
            "Accept": "application/json;verbose",
        }
        try:
            response = client.post(url, content=data, headers=headers, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{base}: {exc}") from None
        if response.status_code != 200:
            raise _http_error(response, base)
        result: dict[str, Any] = response.json()
        return result

    return classify, client.close


# --- both -------------------------------------------------------------------------------------------------


def _one(classify: Classify, path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"source": str(path), "error": f"cannot read file: {exc}"}
    try:
        return {"source": str(path), **classify(data, path)}
    except ImageRejected as exc:
        return {"source": str(path), "error": exc.message}


def _results(classify: Classify, paths: list[Path]) -> Iterator[dict[str, Any]]:
    """Results in input order, with at most ``2 * CONCURRENCY`` images in flight or waiting to print."""
    pool = ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(paths)))
    pending = iter(paths)
    window: deque[Future[dict[str, Any]]] = deque(
        pool.submit(_one, classify, p) for p in itertools.islice(pending, 2 * CONCURRENCY)
    )
    try:
        while window:
            result = window.popleft().result()
            following = next(pending, None)
            if following is not None:
                window.append(pool.submit(_one, classify, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def predict(args: argparse.Namespace, targets: list[str]) -> int:
    """Classify ``targets`` (files or folders) on ``args.server`` or ``args.gateway``; the exit code."""
    if args.server and args.gateway:
        raise InvalidArgument("give --server or --gateway, not both")
    paths = [p for t in targets for p in list_images(Path(t))]
    if not paths:
        raise InvalidArgument(f"no images found in {', '.join(targets)}")
    classify, close = _grpc_classifier(args) if args.server else _http_classifier(args)
    single = len(paths) == 1 and Path(targets[0]).is_file()
    failures = 0
    try:
        for result in _results(classify, paths):
            if "error" in result:
                failures += 1
                if single:
                    raise InvalidArgument(f"{result['source']}: {result['error']}")
            if single:
                result.pop("source")
            print(json.dumps(result), flush=True)
    finally:
        close()
    if failures:
        print(f"{failures} of {len(paths)} images failed", file=sys.stderr)
    return 1 if failures else 0
