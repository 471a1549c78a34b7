"""The Starlette application: routes, the one middleware, the hot path, the 404/405 handler and the lifespan.

Middleware, outermost first: :class:`~gateway.middleware.GatewayMiddleware` (request id, auth, errors,
metrics, access log) for every request, then :class:`~gateway.invocations.HotRoutes`, which sends the
invocation routes straight to their pure-ASGI handler; everything else goes through Starlette's router.

The gRPC channel is created in the lifespan (``grpc.aio`` objects belong to the loop that serves the app)
and closed after uvicorn has drained the in-flight requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from gateway import openapi
from gateway.client import GrpcInference, tls_credentials
from gateway.console import Console
from gateway.core import Gateway
from gateway.errors import MethodNotAllowed, RouteNotFound, error_response
from gateway.inputs import REQUEST_ID_KEY
from gateway.invocations import HotRoutes
from gateway.metrics import GatewayMetrics
from gateway.middleware import GatewayMiddleware
from gateway.routes import Endpoints
from gateway.settings import GatewaySettings
from gateway.tfserving_rest import TfServingEndpoints
from gateway.upstream import Inference

log = logging.getLogger(__name__)

InferenceFactory = Callable[[GatewaySettings, GatewayMetrics], Inference]


def grpc_inference(settings: GatewaySettings, metrics: GatewayMetrics) -> Inference:
    return GrpcInference(
        settings.inference,
        default_retry_after=settings.retry_after_seconds,
        observe=metrics.observe_upstream,
        reconnect_max_backoff=settings.reconnect_max_backoff_seconds,
        credentials=(
            tls_credentials(settings.inference_ca, settings.inference_cert, settings.inference_key)
            if settings.inference_uses_tls
            else None
        ),
        token=settings.inference_auth_token,
    )


def create_app(
    settings: GatewaySettings,
    *,
    metrics: GatewayMetrics | None = None,
    inference_factory: InferenceFactory = grpc_inference,
) -> Starlette:
    metrics = metrics or GatewayMetrics()
    gateway = Gateway(settings, observe_coalesced=metrics.observe_coalesced)
    document = json.dumps(openapi.build(settings), separators=(",", ":")).encode()
    endpoints = Endpoints(gateway, metrics, document)
    hot = endpoints.invocation_routes()
    routes = [*hot, *endpoints.operational_routes(), *TfServingEndpoints(gateway).routes()]
    console = Console(settings) if settings.console else None
    if console is not None:
        routes += console.routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.metrics_port >= 0:
            app.state.metrics_port = metrics.serve(settings.host, settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics", settings.host, app.state.metrics_port)
        inference = inference_factory(settings, metrics)
        gateway.attach(inference)
        if console is not None:
            console.attach()
        log.info("gateway started; inference service at %s", settings.inference)
        try:
            yield
        finally:
            gateway.draining = True
            await gateway.detach()
            await inference.close()
            metrics.close()
            if console is not None:
                await console.close()
            log.info("gateway stopped")

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: Exception = exc
        if exc.status_code == 404:
            error = RouteNotFound(f"no route for {request.method} {request.url.path}; see /openapi.json")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        response = error_response(
            error, retry_after_seconds=settings.retry_after_seconds, request_id=request.scope.get(REQUEST_ID_KEY)
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(GatewayMiddleware, settings=settings, metrics=metrics, routes=routes),
            Middleware(HotRoutes, routes=hot),
        ],
        exception_handlers={HTTPException: http_exception},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.metrics = metrics
    app.state.metrics_port = None
    return app
