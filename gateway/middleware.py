"""One pure-ASGI middleware around every request: request id, bearer auth, errors, metrics and the access log.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) so it adds microseconds, not a task per request.

* ``X-Request-Id``: taken from the request when it is 1–128 visible ASCII characters, generated
  otherwise; echoed on the response, put on log records and forwarded to the inference service.
* Auth (when a token is configured): ``Authorization: Bearer <token>`` on every path but the health
  checks, ``/metrics``, ``/openapi.json`` and the console's pages (:func:`gateway.console.is_public`);
  compared in constant time; 401 otherwise.
* Errors: any exception raised before the response started becomes the JSON error response of
  :func:`gateway.errors.error_response` (the one handler).
* Metrics by route template and status code; one access-log line per request at INFO.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import console
from gateway.errors import error_response
from gateway.inputs import REQUEST_ID_KEY, START_KEY
from gateway.metrics import UNMATCHED, GatewayMetrics
from gateway.settings import GatewaySettings
from tfic.errors import Unauthenticated

access_log = logging.getLogger("gateway.access")
log = logging.getLogger(__name__)

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")
PUBLIC_PATHS = frozenset({"/ping", "/healthz", "/readyz", "/metrics", "/openapi.json"})
MAX_REQUEST_ID = 128


def valid_request_id(value: bytes) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID and all(0x21 <= c <= 0x7E for c in value)


class GatewayMiddleware:
    def __init__(
        self, app: ASGIApp, *, settings: GatewaySettings, metrics: GatewayMetrics, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.retry_after = settings.retry_after_seconds
        self.token = settings.auth_token.encode() if settings.auth_token else None
        self._templates: dict[str, str] = {}

    def _route_template(self, scope: Scope) -> str:
        """The matched route's path as the OpenAPI document writes it (``{version}``, not ``{version:int}``)."""
        route = scope.get("route")
        if route is None:  # refused before routing (auth): find the template ourselves
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match is not Match.NONE:
                    route = candidate
                    break
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return UNMATCHED
        template = self._templates.get(path)
        if template is None:
            template = self._templates[path] = _CONVERTOR.sub(r"{\1}", path)
        return template

    def _check_auth(self, authorization: bytes | None) -> None:
        assert self.token is not None
        if authorization is None:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, credentials = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.token):
            raise Unauthenticated("invalid bearer token")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        scope[START_KEY] = time.monotonic()
        request_id: bytes | None = None
        authorization: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value
            elif key == b"authorization":
                authorization = value
        if request_id is None or not valid_request_id(request_id):
            request_id = os.urandom(16).hex().encode()  # uuid4's randomness without building a UUID
        rid = request_id.decode()
        scope[REQUEST_ID_KEY] = rid
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if self.token is not None and scope["path"] not in PUBLIC_PATHS and not console.is_public(scope["path"]):
                self._check_auth(authorization)
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if response_started:
                log.exception("error after the response started (request %s)", rid, extra={"request_id": rid})
            else:
                response = error_response(exc, retry_after_seconds=self.retry_after, request_id=rid)
                await response(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started_at
            self.metrics.observe_request(self._route_template(scope), status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms request_id=%s",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    rid,
                    extra={"request_id": rid},
                )
