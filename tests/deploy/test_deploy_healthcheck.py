"""deploy/docker/healthcheck.py, the images' HEALTHCHECK and the TLS trainer's exec probe, against real servers:
plaintext and TLS gRPC health, and HTTP."""

from __future__ import annotations

import datetime
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


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tfic_healthcheck", DEPLOY / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEALTH = _load()


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` signed by its own key (it is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def grpc_servers(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A plaintext and a TLS gRPC server with health checking: "" SERVING, tfic.v1.Trainer NOT_SERVING."""
    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path, "tfic-trainer")
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
