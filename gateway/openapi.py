"""The OpenAPI 3.0 document served at ``/openapi.json``, written by hand (binary bodies, four response shapes).

Built once at startup from the settings (the body limit, the default Accept type, whether auth is on).
"""

from __future__ import annotations

from typing import Any

from gateway.negotiation import FORMATS, IMAGE_CONTENT_TYPES
from gateway.openapi_schemas import ref as _ref
from gateway.openapi_schemas import schemas
from gateway.settings import GatewaySettings

MODEL_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
INT64_MAX = 2**63 - 1


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_HEADERS_OUT = {
    "X-Request-Id": {"description": "The request's id (the caller's, or generated).", "schema": {"type": "string"}},
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}},
    **_HEADERS_OUT,
}

_ERROR_TEXT = {
    400: "Invalid request: corrupt or empty image, bad parameter or body.",
    401: "Missing or invalid bearer token.",
    404: "Unknown model, version or label.",
    405: "Method not allowed on this path.",
    406: "None of the types in Accept can be produced.",
    409: "The model or version is unloaded by an operator (POST .../{name}:load serves it again).",
    413: "Request body (or image) too large.",
    415: "Unsupported Content-Type, or data that is not an image in a supported format.",
    429: "The inference service's queue is full; retry after Retry-After seconds.",
    500: "Internal error.",
    503: "The inference service (or the model) is unavailable; retry after Retry-After seconds.",
    504: "The deadline passed before the inference service answered.",
}


def _errors(*codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        out[str(code)] = {
            "description": _ERROR_TEXT[code],
            "headers": _RETRY_AFTER if code in (429, 503) else _HEADERS_OUT,
            "content": _json(_ref("Error")),
        }
    return out


_COMMON_ERRORS = (400, 404, 413, 429, 500, 503, 504)

_REQUEST_PARAMS: list[dict[str, Any]] = [
    {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "Echoed on the response, logged and forwarded to the inference service (1–128 visible "
        "ASCII characters; otherwise a new id is generated).",
        "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
    },
    {
        "name": "X-Request-Timeout",
        "in": "header",
        "required": False,
        "description": "Seconds the caller will wait; the inference call gets the smaller of this and the "
        "gateway's --timeout-seconds (504 when it passes). X-Envoy-Expected-Rq-Timeout-Ms is honoured too.",
        "schema": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
    },
]
_TOP_K = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "description": "Return only the K most probable classes, highest first (0 or absent: every class in label order).",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN}}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
}
_LABEL = {"name": "label", "in": "path", "required": True, "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN}}
_LABEL_HEADER = {
    "name": "X-Tfic-Version-Label",
    "in": "header",
    "required": False,
    "description": "A version label (stable, canary) to answer with instead of the model's default routing.",
    "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN},
}


def build(settings: GatewaySettings) -> dict[str, Any]:
    auth = settings.auth_token is not None
    protected = (401, *_COMMON_ERRORS) if auth else _COMMON_ERRORS

    def prediction_ok() -> dict[str, Any]:
        return {
            "description": "The prediction, in the representation the Accept header asks for.",
            "headers": {
                **_HEADERS_OUT,
                "X-Tfic-Model": {"description": "The model that answered.", "schema": {"type": "string"}},
                "X-Tfic-Model-Version": {"description": "The version that answered.", "schema": {"type": "string"}},
            },
            "content": {
                "application/json": {"schema": {"oneOf": [_ref("Probabilities"), _ref("VerbosePrediction")]}},
                "application/jsonlines": {
                    "schema": {"type": "string"},
                    "description": 'One line, {"prediction": [...]}; with ;verbose also "labels", "predicted_label".',
                },
            },
        }

    def invocation(summary: str, params: list[dict[str, Any]], extra_headers: bool) -> dict[str, Any]:
        model_headers: list[dict[str, Any]] = []
        if extra_headers:
            model_headers = [
                {
                    "name": "X-Tfic-Model",
                    "in": "header",
                    "required": False,
                    "description": "The model to use (default: --default-model, else the only model served).",
                    "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN},
                },
                {
                    "name": "X-Amzn-SageMaker-Target-Model",
                    "in": "header",
                    "required": False,
                    "description": "SageMaker's multi-model header; NAME.tar.gz names model NAME.",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$"},
                },
            ]
        return {
            "post": {
                "summary": summary,
                "description": "Send one encoded image; choose the response shape with Accept: "
                + ", ".join(FORMATS)
                + f". A missing Accept or */* gets {settings.default_accept}; other types get 406.",
                "parameters": [*params, *model_headers, _TOP_K, *_REQUEST_PARAMS],
                "requestBody": {
                    "required": True,
                    "description": f"One encoded image, at most {settings.max_body_bytes} bytes.",
                    "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_CONTENT_TYPES},
                },
                "responses": {"200": prediction_ok(), **_errors(*protected, 406, 409, 415)},
            }
        }

    def get(summary: str, schema: str, params: list[dict[str, Any]], errors: tuple[int, ...]) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "parameters": [*params, *_REQUEST_PARAMS],
                "responses": {
                    "200": {"description": "OK", "headers": _HEADERS_OUT, "content": _json(_ref(schema))},
                    **_errors(*errors),
                },
            }
        }

    def tfs_post(summary: str, request: str, response: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [*params, _TOP_K, *_REQUEST_PARAMS],
                "requestBody": {"required": True, "content": _json(_ref(request))},
                "responses": {
                    "200": {"description": "OK", "headers": _HEADERS_OUT, "content": _json(_ref(response))},
                    **_errors(*protected, 409, 415),
                },
            }
        }

    def control(summary: str, params: list[dict[str, Any]], body: bool) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "summary": summary,
            "description": "Operator control of the inference service that answers (docs/gateway.md, Unloading "
            "and loading models); the model's files are not touched.",
            "parameters": [*params, *_REQUEST_PARAMS],
            "responses": {
                "200": {
                    "description": "The model's state after",
                    "headers": _HEADERS_OUT,
                    "content": _json(_ref("Model")),
                },
                **_errors(*protected, 409),
            },
        }
        if body:
            operation["requestBody"] = {
                "required": False,
                "content": _json({"type": "object", "properties": {"reason": {"type": "string", "maxLength": 1000}}}),
            }
        return {"post": operation}

    paths: dict[str, Any] = {
        "/invocations": invocation("Classify an image (SageMaker's InvokeEndpoint contract)", [_LABEL_HEADER], True),
        "/models/{name}/invocations": invocation("Classify an image with a named model", [_NAME, _LABEL_HEADER], False),
        "/models/{name}/versions/{version}/invocations": invocation(
            "Classify an image with one version of a model", [_NAME, _VERSION], False
        ),
        "/models/{name}/labels/{label}/invocations": invocation(
            "Classify an image with the version of a model carrying a label", [_NAME, _LABEL], False
        ),
    }
    public_get: dict[str, Any] = {"security": []} if auth else {}
    for path, summary, ok, errs in (
        ("/ping", "SageMaker's health check: 200 once a model is loaded", "Status", (503,)),
        ("/healthz", "Liveness of the gateway itself", "Status", ()),
        ("/readyz", "Readiness: the inference service is serving and the gateway is not draining", "Status", (503,)),
    ):
        paths[path] = get(summary, ok, [], errs)
        paths[path]["get"].update(public_get)
    paths["/models"] = get(
        "Models, their versions and states", "ModelList", [], tuple(c for c in protected if c != 404)
    )
    paths["/models/{name}"] = get("One model's versions", "Model", [_NAME], protected)
    for prefix, params, what in (
        ("/models/{name}", [_NAME], "a model"),
        ("/models/{name}/versions/{version}", [_NAME, _VERSION], "one version of a model"),
    ):
        paths[prefix + ":unload"] = control(f"Stop serving {what}, files untouched (state END)", params, True)
        paths[prefix + ":load"] = control(f"Serve {what} again after :unload", params, False)
    if settings.metrics_port < 0:  # else on a port of its own, not this API's
        paths["/metrics"] = {
            "get": {
                "summary": "Prometheus metrics",
                **public_get,
                "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            **public_get,
            "responses": {"200": {"description": "OK", "content": _json({"type": "object"})}},
        }
    }
    for prefix, params in (
        ("/v1/models/{name}", [_NAME]),
        ("/v1/models/{name}/versions/{version}", [_NAME, _VERSION]),
        ("/v1/models/{name}/labels/{label}", [_NAME, _LABEL]),
    ):
        paths[prefix + ":predict"] = tfs_post(
            "TensorFlow Serving REST predict (serving_default)", "TfsPredictRequest", "TfsPredictResponse", params
        )
        paths[prefix + ":classify"] = tfs_post(
            "TensorFlow Serving REST classify", "TfsClassifyRequest", "TfsClassifyResponse", params
        )
        paths[prefix] = get("TensorFlow Serving model status", "TfsModelStatus", params, protected)
        paths[prefix + "/metadata"] = get("TensorFlow Serving model metadata", "TfsMetadata", params, protected)

    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "tfic gateway",
            "version": "1",
            "description": "SageMaker's image-classification HTTP contracts and TensorFlow Serving's REST API in "
            "front of tfic's inference service. Every error body is Error.",
        },
        "paths": paths,
        "components": {"schemas": schemas()},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
