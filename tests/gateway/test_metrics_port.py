"""--metrics-port: /metrics on a port of its own (a network policy keeps it to Prometheus), gone from the port
that faces callers and from the OpenAPI document."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.servers import MODEL, RunningInference, run_gateway

REPO = Path(__file__).resolve().parents[2]


def test_metrics_move_to_their_own_port(inference: RunningInference, images: dict[str, bytes]) -> None:
    settings = GatewaySettings(host="127.0.0.1", inference=inference.target, default_model=MODEL, metrics_port=0)
    app = create_app(settings)
    with run_gateway(settings, app) as gateway, gateway.client() as client:
        port = app.state.metrics_port
        assert isinstance(port, int) and port > 0
        classified = client.post(
            f"/models/{MODEL}/invocations", content=images["png"], headers={"Content-Type": "image/png"}
        )
        assert classified.status_code == 200
        assert client.get("/metrics").status_code == 404
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scraped.status_code == 200
    assert 'tfic_gateway_requests_total{code="200",route="/models/{name}/invocations"} 1.0' in scraped.text
    # The side server stops with the gateway.
    try:
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the metrics port still answers after the gateway stopped")


def test_without_a_metrics_port_metrics_stay_on_the_main_port(client: httpx.Client) -> None:
    assert client.get("/metrics").status_code == 200
    assert "/metrics" in client.get("/openapi.json").json()["paths"]


def test_a_metrics_port_in_use_is_one_clear_error_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", "0", "--metrics-port", str(port),
             "--inference", "127.0.0.1:1"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"python -m gateway: error: cannot serve metrics on 127.0.0.1:{port}: " in done.stderr
    assert "in use" in done.stderr and "Traceback" not in done.stderr
    assert "listening on" not in done.stderr  # it never started serving callers
