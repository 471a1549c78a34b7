"""SageMaker's invocation routes as one pure-ASGI app: the gateway's hot path.

Every other route is a Starlette endpoint; this one is not, because on a 2-core machine Starlette's
per-request layers (exception middleware twice, the router's scan of every route, ``Request``,
``Response`` and their header objects, three ``send`` wrappers) cost about as much CPU as the gRPC
call itself (docs/gateway.md). It reads the headers once from the scope, streams the body from
``receive`` and writes the two response messages itself. Errors are raised, not answered: the
:class:`~gateway.middleware.GatewayMiddleware` around it turns them into the one JSON error body.
:class:`HotRoutes` sends matching requests here without passing through Starlette's router.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import render
from gateway.core import Gateway
from gateway.inputs import body_deadline, call_for, headers, model_header, path_model, read_body, top_k
from gateway.negotiation import check_image_content_type, negotiate, parse_format
from gateway.upstream import ModelRef
from tfic.errors import InvalidImage

LABEL_HEADER = "x-tfic-version-label"
MODEL_HEADER_OUT = b"x-tfic-model"
VERSION_HEADER_OUT = b"x-tfic-model-version"


class Invocations:
    """``POST /invocations`` and ``/models/{name}[/versions/{v} | /labels/{l}]/invocations``: one image in, one
    prediction out, in the representation the Accept header asks for."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.default_format = parse_format(self.settings.default_accept)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = headers(scope)
        fmt = negotiate(head.get("accept"), self.default_format)
        check_image_content_type(head.get("content-type"))
        k = top_k(scope["query_string"])
        call = call_for(scope, head, self.settings.timeout_seconds)
        deadline = body_deadline(scope, call, self.settings.body_timeout_seconds)
        body = await read_body(scope, receive, head.get("content-length"), self.settings.max_body_bytes, *deadline)
        if not body:
            raise InvalidImage("the request body is empty; send one encoded image")
        model = path_model(scope.get("path_params", {})) or ModelRef(
            await self.gateway.resolve(model_header(head), call)
        )
        label = head.get(LABEL_HEADER)
        if label and model.version is None and not model.label:  # a version or label in the path wins
            model = ModelRef(model.name, label=label)
        prediction = await self.gateway.classify(model, (body,), k, call)
        payload = render.prediction(prediction.results[0], fmt)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", fmt.content_type.encode()),
                    (b"content-length", str(len(payload)).encode()),
                    (MODEL_HEADER_OUT, prediction.model_name.encode("latin-1")),
                    (VERSION_HEADER_OUT, str(prediction.model_version).encode()),
                    (b"vary", b"Accept"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class HotRoutes:
    """Pure-ASGI middleware: a request that fully matches one of ``routes`` goes straight to that route.

    Skips Starlette's exception middleware and its router's scan of every route; a request that does
    not match (or matches only the path, e.g. GET on a POST route) goes on to ``app``, the router,
    which answers 404/405 as usual. Set ``scope["route"]`` as the router would, for the metrics' route label.
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["route"] = route
                    await route.handle(scope, receive, send)
                    return
        await self.app(scope, receive, send)
