"""SageMaker's hosting contract and the operational routes: invocations, health, models, metrics, OpenAPI."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import render
from gateway.core import Gateway
from gateway.inputs import call_for
from gateway.invocations import Invocations
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.metrics import GatewayMetrics
from tfic.errors import InvalidArgument, Unavailable

JSON = "application/json"

PING_TIMEOUT = 2.0  # SageMaker expects /ping to answer within 2 s

_OK = render.dumps({"status": "ok"})
_READY = render.dumps({"status": "ready"})


class Endpoints:
    def __init__(self, gateway: Gateway, metrics: GatewayMetrics, openapi: bytes) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.metrics = metrics
        self.openapi_json = openapi
        self.invocations = Invocations(gateway)

    def invocation_routes(self) -> list[BaseRoute]:
        """The hot path (:mod:`gateway.invocations`): the app routes these ahead of Starlette's router."""
        post = ["POST"]
        return [
            Route("/invocations", self.invocations, methods=post),
            Route("/models/{name}/invocations", self.invocations, methods=post),
            Route("/models/{name}/versions/{version:int}/invocations", self.invocations, methods=post),
            Route("/models/{name}/labels/{label}/invocations", self.invocations, methods=post),
        ]

    def operational_routes(self) -> list[BaseRoute]:
        get = ["GET"]
        return [
            Route("/ping", self.ping, methods=get),
            Route("/healthz", self.healthz, methods=get),
            Route("/readyz", self.readyz, methods=get),
            Route("/models", self.list_models, methods=get),
            Route("/models/{name}", self.get_model, methods=get),
            # Operator control (docs/gateway.md, Unloading and loading models); behind --auth-token like the rest.
            Route("/models/{name}:unload", self.control, methods=["POST"]),
            Route("/models/{name}:load", self.control, methods=["POST"]),
            Route("/models/{name}/versions/{version:int}:unload", self.control, methods=["POST"]),
            Route("/models/{name}/versions/{version:int}:load", self.control, methods=["POST"]),
            # With --metrics-port, /metrics lives on that port only: not on the port that faces callers.
            *([Route("/metrics", self.metrics_endpoint, methods=get)] if self.settings.metrics_port < 0 else []),
            Route("/openapi.json", self.openapi, methods=get),
        ]

    async def ping(self, request: Request) -> Response:
        """SageMaker's health check: 200 once a model (the default one, if configured) has a loaded version."""
        if not await self.gateway.model_loaded(
            call_for(request.scope, request.headers, min(self.settings.timeout_seconds, PING_TIMEOUT))
        ):
            raise Unavailable("no model is loaded yet")
        return Response(_OK, media_type=JSON)

    async def healthz(self, request: Request) -> Response:
        """Liveness: the gateway's event loop answers (the inference service is not consulted)."""
        return Response(_OK, media_type=JSON)

    async def readyz(self, request: Request) -> Response:
        """Readiness: not draining, and the inference service reports tfic.v1.Classifier SERVING."""
        if not await self.gateway.ready():
            raise Unavailable("shutting down" if self.gateway.draining else "the inference service is not ready")
        return Response(_READY, media_type=JSON)

    async def list_models(self, request: Request) -> Response:
        models = await self.gateway.inference.list_models(
            call_for(request.scope, request.headers, self.settings.timeout_seconds)
        )
        return Response(render.models(models), media_type=JSON)

    async def get_model(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        model = await self.gateway.inference.get_model(
            name, call_for(request.scope, request.headers, self.settings.timeout_seconds)
        )
        return Response(render.dumps(render.model_json(model)), media_type=JSON)

    async def control(self, request: Request) -> Response:
        """``:unload`` (optional JSON body ``{"reason": "..."}``) or ``:load``; the model's state after."""
        name: str = request.path_params["name"]
        version: int | None = request.path_params.get("version")
        call = call_for(request.scope, request.headers, self.settings.timeout_seconds)
        if request.url.path.endswith(":unload"):
            model = await self.gateway.inference.unload_model(name, version, await _reason(request), call)
        else:
            model = await self.gateway.inference.load_model(name, version, call)
        return Response(render.dumps(render.model_json(model)), media_type=JSON)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_json, media_type=JSON)


MAX_CONTROL_BODY = 64 * 1024


async def _reason(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CONTROL_BODY:
            raise InvalidArgument(f"the body of a control request is limited to {MAX_CONTROL_BODY} bytes")
    if not body.strip():
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidArgument('the body must be JSON: {"reason": "..."} (or empty)') from None
    reason = data.get("reason", "") if isinstance(data, dict) else None
    if not isinstance(reason, str):
        raise InvalidArgument("'reason' must be a string", field="reason")
    return reason
