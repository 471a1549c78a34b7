"""HTTPS on the gateway itself, and client certificates (mTLS), with a real HTTPS client over TCP."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.certs import self_signed
from tests.gateway.servers import run_gateway
from tfic.errors import InvalidArgument


def https_url(url: str) -> str:
    return "https://localhost:" + url.rsplit(":", 1)[1]


def test_the_gateway_serves_https(tmp_path: Path, refused_port: int) -> None:
    cert, key = self_signed(tmp_path, "gateway")
    with run_gateway(GatewaySettings(inference=f"127.0.0.1:{refused_port}", tls_cert=cert, tls_key=key)) as gw:
        url = https_url(gw.url)
        response = httpx.get(url + "/healthz", verify=ssl.create_default_context(cafile=cert), timeout=10)
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError):  # the certificate is not one the system trusts
            httpx.get(url + "/healthz", timeout=10)
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on the TLS port
            httpx.get(gw.url + "/healthz", timeout=10)


def test_client_certificates_are_required_with_a_client_ca(tmp_path: Path, refused_port: int) -> None:
    cert, key = self_signed(tmp_path, "gateway")
    client_cert, client_key = self_signed(tmp_path, "client")
    settings = GatewaySettings(
        inference=f"127.0.0.1:{refused_port}", tls_cert=cert, tls_key=key, tls_client_ca=client_cert
    )
    with run_gateway(settings) as gw:
        url = https_url(gw.url) + "/healthz"
        with_cert = ssl.create_default_context(cafile=cert)
        with_cert.load_cert_chain(client_cert, client_key)
        assert httpx.get(url, verify=with_cert, timeout=10).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=ssl.create_default_context(cafile=cert), timeout=10)


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="--tls-cert and --tls-key go together"):
        GatewaySettings(tls_cert=Path(__file__))
    with pytest.raises(InvalidArgument, match="--tls-client-ca needs --tls-cert"):
        GatewaySettings(tls_client_ca=Path(__file__))
