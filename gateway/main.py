"""``tfic serve gateway`` / ``python -m gateway``: the app on uvicorn, with a graceful shutdown.

On SIGTERM or SIGINT: ``/readyz`` turns 503 at once (load balancers stop sending), uvicorn stops accepting
connections and gives in-flight requests up to ``--shutdown-grace-seconds``, then the gRPC channel closes.
"""

from __future__ import annotations

import logging
import math
import ssl
import sys
import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.connections import ConnectionGuard, protocol_class
from gateway.core import Gateway
from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

SETTINGS = GatewaySettings  # what `tfic serve gateway` and `python -m gateway` build and pass to run()


class GatewayServer(uvicorn.Server):
    """uvicorn's server, marking the gateway as draining on the first signal and reporting its bound port."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.ready = threading.Event()
        self.port: int | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        if self.servers and self.servers[0].sockets:
            self.port = int(self.servers[0].sockets[0].getsockname()[1])
        self.ready.set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway.draining = True
        super().handle_exit(sig, frame)


def build_server(settings: GatewaySettings, app: Starlette | None = None) -> GatewayServer:
    app = app or create_app(settings)
    metrics: GatewayMetrics = app.state.metrics
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # httptools' protocol with the header deadline and the connection caps (gateway/connections.py).
        http=protocol_class(ConnectionGuard(settings, metrics)),
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        lifespan="on",
        log_config=None,  # logging is configured once by the entry point
        access_log=False,  # the middleware writes one line per request with its request id
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        ssl_ca_certs=settings.tls_client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if settings.tls_client_ca is not None else ssl.CERT_NONE,
    )
    gateway: Gateway = app.state.gateway
    return GatewayServer(config, gateway)


def run(settings: GatewaySettings) -> int:
    app = create_app(settings)
    if settings.metrics_port >= 0:
        # Bound here, before uvicorn, so a port in use is one line (FailedPrecondition, exit 2) and not a
        # traceback out of the app's startup; the lifespan then finds it serving.
        metrics: GatewayMetrics = app.state.metrics
        metrics.serve(settings.host, settings.metrics_port)
    server = build_server(settings, app)
    threading.Thread(target=_announce, args=(server, settings), daemon=True).start()
    server.run()
    return 0 if server.started else 1


def _announce(server: GatewayServer, settings: GatewaySettings) -> None:
    server.ready.wait()
    if server.port is not None:
        print(
            f"tfic gateway listening on {'https' if settings.tls_cert else 'http'}://{settings.host}:{server.port} "
            f"(inference service {settings.inference})",
            file=sys.stderr,
            flush=True,
        )
