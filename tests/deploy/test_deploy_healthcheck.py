"""deploy/docker/healthcheck.py, the images' HEALTHCHECK and the TLS trainer's exec probe, against real servers:
plaintext and TLS gRPC health, and HTTP."""

from __future__ import annotations

import http.server
import importlib.util
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from deploy_support import DEPLOY
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.certs import self_signed


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tfic_healthcheck", DEPLOY / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEALTH = _load()


@pytest.fixture
def grpc_servers(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A plaintext and a TLS gRPC server with health checking: "" SERVING, tfic.v1.Trainer NOT_SERVING."""
    pytest.importorskip("cryptography")
    cert, key = self_signed(tmp_path, "tfic-trainer")
    servicer = health.HealthServicer()
    servicer.set("tfic.v1.Trainer", health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    plain = server.add_insecure_port("127.0.0.1:0")
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    secure = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield plain, secure, cert
    server.stop(None)


def test_grpc_plaintext_and_tls(grpc_servers: tuple[int, int, Path]) -> None:
    plain, secure, ca = grpc_servers
    assert HEALTH.check_grpc(plain, "")
    assert not HEALTH.check_grpc(plain, "tfic.v1.Trainer")  # NOT_SERVING
    assert not HEALTH.check_grpc(plain, "no.such.Service")  # NOT_FOUND
    assert HEALTH.check_grpc(secure, "", tls_ca=ca, server_name="tfic-trainer")
    assert not HEALTH.check_grpc(secure, "", timeout=1)  # plaintext to a TLS port
    assert not HEALTH.check_grpc(secure, "", tls_ca=ca, server_name="someone-else", timeout=1)


def test_command_line_exit_status(grpc_servers: tuple[int, int, Path]) -> None:
    plain, secure, ca = grpc_servers
    assert HEALTH.main(["grpc", str(plain)]) == 0
    assert HEALTH.main(["grpc", str(plain), "tfic.v1.Trainer"]) == 1
    # The trainer-tls component's probe command line.
    tls = ["--tls-ca", str(ca), "--server-name", "tfic-trainer"]
    assert HEALTH.main(["grpc", str(secure), "", *tls]) == 0


def test_http() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert HEALTH.check_http(port, "/readyz")
        assert not HEALTH.check_http(port, "/other")
        assert HEALTH.main(["http", str(port), "/readyz"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert not HEALTH.check_http(port, "/readyz", timeout=1)  # nobody listening
