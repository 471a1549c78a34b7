"""TensorFlow Serving's REST API on top of ``tfic.v1.Classifier``, for clients written against TF Serving.

* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict`` with ``{"instances": [{"b64": "..."}]}``
  (or ``{"instances": [{"image_bytes": {"b64": "..."}}]}``) → ``{"predictions": [{"probabilities": [...],
  "classes": [...]}]}``; with the columnar ``{"inputs": [{"b64": ...}]}`` (or ``{"inputs": {"image_bytes":
  [...]}}``) → ``{"outputs": {"probabilities": [[...]], "classes": [[...]]}}``. These are the outputs of
  the exported ``serving_default`` signature, so the answer matches TF Serving serving the same version.
* ``POST ...:classify`` with ``{"examples": [{"image_bytes": {"b64": "..."}}], "context": {...}}``
  → ``{"results": [[["label", score], ...]]}``.
* ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]`` (status) and ``.../metadata`` (signatures).

The gateway stays free of TensorFlow: it translates to the Classifier API rather than to TF Serving's
``PredictionService`` (whose messages need TensorFlow's protos). Error bodies are the gateway's
``{"error": {...}}`` (TF Serving sends ``{"error": "message"}``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import render
from gateway.core import Gateway
from gateway.inputs import body_deadline, call_for, path_model, read_body, top_k
from gateway.negotiation import check_json_content_type
from gateway.upstream import Call, ModelRef, VersionInfo
from tfic.errors import InvalidArgument, ModelNotFound, Unavailable
from tfic.modeldir import INPUT_BYTES, SIGNATURE_BYTES, SIGNATURE_IMAGES

JSON = "application/json"
# Bodies larger than this are parsed and base64-decoded in a worker thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024

_T = TypeVar("_T")
_B64_HINT = '{"b64": "<base64 of the encoded image>"}'


FORM_URLENCODED = "application/x-www-form-urlencoded"


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("request body must be a JSON object")
    signature = doc.get("signature_name", SIGNATURE_BYTES)
    if signature == SIGNATURE_IMAGES:
        raise InvalidArgument(
            f"the REST API serves the {SIGNATURE_BYTES} signature (encoded images); call {SIGNATURE_IMAGES} "
            "with float tensors over gRPC (tensorflow.serving.PredictionService/Predict)"
        )
    if signature not in (SIGNATURE_BYTES, ""):
        raise InvalidArgument(f"unknown signature_name {signature!r}; the model's signature is {SIGNATURE_BYTES!r}")
    return doc


def _b64(value: Any, where: str) -> bytes:
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)):
        raise InvalidArgument(f"{where} must be {_B64_HINT}")
    text: str = value["b64"]
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{where}.b64 is not valid base64") from None


def _named(value: Any, where: str) -> tuple[Any, str]:
    """``{"image_bytes": x}`` → (x, where.image_bytes); ``{"b64": ...}`` or a list is returned as is."""
    if isinstance(value, dict) and "b64" not in value:
        unknown = sorted(set(value) - {INPUT_BYTES})
        if unknown or INPUT_BYTES not in value:
            raise InvalidArgument(
                f"{where} names inputs {unknown or sorted(value)}; the {SIGNATURE_BYTES} signature takes one "
                f"input, {INPUT_BYTES!r}"
            )
        return value[INPUT_BYTES], f"{where}.{INPUT_BYTES}"
    return value, where


def _non_empty_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(f"{where} must be a non-empty list of {_B64_HINT}")
    return value


def parse_predict(body: bytes) -> tuple[list[bytes], bool]:
    """The images of a predict request and whether it used the columnar (``inputs``) format."""
    doc = _load(body)
    if ("instances" in doc) == ("inputs" in doc):
        raise InvalidArgument('send exactly one of "instances" (row format) or "inputs" (columnar format)')
    if "instances" in doc:
        images = []
        for i, item in enumerate(_non_empty_list(doc["instances"], '"instances"')):
            value, where = _named(item, f"instances[{i}]")
            images.append(_b64(value, where))
        return images, False
    value, where = _named(doc["inputs"], "inputs")
    items = _non_empty_list(value, where)
    return [_b64(item, f"{where}[{i}]") for i, item in enumerate(items)], True


def parse_classify(body: bytes) -> list[bytes]:
    """The images of a classify request: each example's ``image_bytes`` feature (or its only b64 feature)."""
    doc = _load(body)
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise InvalidArgument('"context" must be an object of features')
    images = []
    for i, example in enumerate(_non_empty_list(doc.get("examples"), '"examples"')):
        if not isinstance(example, dict):
            raise InvalidArgument(f'examples[{i}] must be an object of features, e.g. {{"{INPUT_BYTES}": {_B64_HINT}}}')
        features = {**context, **example}
        if INPUT_BYTES in features:
            key = INPUT_BYTES
        else:
            binary = [k for k, v in features.items() if isinstance(v, dict) and "b64" in v]
            if len(binary) != 1:
                raise InvalidArgument(f'examples[{i}] needs an "{INPUT_BYTES}" feature: {_B64_HINT}')
            key = binary[0]
        images.append(_b64(features[key], f"examples[{i}].{key}"))
    return images


class TfServingEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for prefix in (
            "/v1/models/{name}",
            "/v1/models/{name}/versions/{version:int}",
            "/v1/models/{name}/labels/{label}",
        ):
            routes += [
                Route(prefix + ":predict", self.predict, methods=["POST"]),
                Route(prefix + ":classify", self.classify, methods=["POST"]),
                Route(prefix + "/metadata", self.metadata, methods=["GET"]),
                Route(prefix, self.status, methods=["GET"]),
            ]
        return routes

    @staticmethod
    def _model(request: Request) -> ModelRef:
        model = path_model(request.path_params)
        assert model is not None  # every TF Serving route names its model
        return model

    async def _parse(self, request: Request, call: Call, parse: Callable[[bytes], _T]) -> _T:
        content_type = request.headers.get("content-type")
        # curl -d sends application/x-www-form-urlencoded unless told otherwise; TF Serving reads the body as JSON
        # whatever that header says, so a JSON body under curl's default type is taken as JSON here too.
        if not (content_type or "").lower().startswith(FORM_URLENCODED):
            check_json_content_type(content_type)
        deadline = body_deadline(request.scope, call, self.settings.body_timeout_seconds)
        length = request.headers.get("content-length")
        body = await read_body(request.scope, request.receive, length, self.settings.max_body_bytes, *deadline)
        return await asyncio.to_thread(parse, body) if len(body) > OFFLOAD_BYTES else parse(body)

    async def predict(self, request: Request) -> Response:
        k = top_k(request.scope["query_string"])
        call = call_for(request.scope, request.headers, self.settings.timeout_seconds)
        images, columnar = await self._parse(request, call, parse_predict)
        prediction = await self.gateway.classify(self._model(request), images, k, call)
        body = render.tfs_outputs(prediction.results) if columnar else render.tfs_predictions(prediction.results)
        return Response(body, media_type=JSON)

    async def classify(self, request: Request) -> Response:
        k = top_k(request.scope["query_string"])
        call = call_for(request.scope, request.headers, self.settings.timeout_seconds)
        images = await self._parse(request, call, parse_classify)
        prediction = await self.gateway.classify(self._model(request), images, k, call)
        return Response(render.tfs_classify(prediction.results), media_type=JSON)

    async def _versions(self, request: Request) -> Sequence[VersionInfo]:
        model = self._model(request)
        info = await self.gateway.inference.get_model(
            model.name, call_for(request.scope, request.headers, self.settings.timeout_seconds)
        )
        versions: Sequence[VersionInfo] = info.versions
        if model.version is not None:
            versions = [v for v in versions if v.version == model.version]
            if not versions:
                raise ModelNotFound(f"model {model.name!r} has no version {model.version}")
        elif model.label:
            versions = [v for v in versions if model.label in v.version_labels]
            if not versions:
                raise ModelNotFound(f"model {model.name!r} has no version labelled {model.label!r}")
        return versions

    async def status(self, request: Request) -> Response:
        return Response(render.tfs_status(await self._versions(request)), media_type=JSON)

    async def metadata(self, request: Request) -> Response:
        versions = await self._versions(request)
        available = [v for v in versions if v.state == "AVAILABLE"]
        if not available:
            raise Unavailable(f"model {request.path_params['name']!r} has no loaded version")
        version = max(available, key=lambda v: v.version)
        return Response(render.tfs_metadata(request.path_params["name"], version), media_type=JSON)
