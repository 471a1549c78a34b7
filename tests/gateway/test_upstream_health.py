"""The gateway's channel health-checks every inference address itself (gRPC client-side health checking on
tfic.v1.Classifier, round_robin): a pod that turns NOT_SERVING leaves the rotation at once, and the gateway's
readiness asks whether any address is serving, not whichever pod one Health.Check happened to reach.

Two real inference servers (tiny real models) behind one gateway channel with a static two-address target
(``ipv4:127.0.0.1:A,127.0.0.1:B``, what ``dns:///tfic-inference-headless:8500`` resolves to with two pods).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.settings import GatewaySettings
from tests.gateway.servers import MODEL, LoopThread, RunningInference, refusing_port, run_gateway, run_inference

DRAIN = 4.0  # seconds the drained server keeps answering while NOT_SERVING
SETTLE_BOUND = 5.0  # seconds the gateway may take to see the NOT_SERVING (milliseconds in practice)


def served(running: RunningInference) -> float:
    """Requests the inference server has answered (its own tfic_inference_requests_total, every label)."""
    return sum(
        float(s.value)
        for metric in running.server.metrics.registry.collect()
        if metric.name == "tfic_inference_requests"
        for s in metric.samples
        if s.name == "tfic_inference_requests_total"
    )


def poster(client: httpx.Client, image: bytes) -> Callable[[], int]:
    def post() -> int:
        response = client.post(f"/models/{MODEL}/invocations", content=image, headers={"Content-Type": "image/png"})
        return response.status_code

    return post


def test_a_not_serving_upstream_leaves_the_rotation_at_once(model_base: Path, images: dict[str, bytes]) -> None:
    with run_inference(model_base) as a, run_inference(model_base) as b:
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        settings = GatewaySettings(inference=target, default_model=MODEL, coalesce_max_images=1)
        with run_gateway(settings) as gateway, gateway.client() as client:
            post = poster(client, images["png"])
            statuses = [post() for _ in range(20)]
            assert served(a) > 0 and served(b) > 0, "round-robin sends to both"

            # A drains as on SIGTERM: NOT_SERVING at once, still answering for DRAIN seconds, then stopped.
            drained = asyncio.run_coroutine_threadsafe(a.server.stop(grace=1.0, drain=DRAIN), a.loop.loop)
            started = time.monotonic()
            streak = 0  # consecutive requests A did not see
            while streak < 10:
                assert time.monotonic() - started < SETTLE_BOUND, "the NOT_SERVING upstream kept getting traffic"
                before = served(a)
                statuses.append(post())
                streak = streak + 1 if served(a) == before else 0
            settled_after = time.monotonic() - started
            at_a = served(a)
            ready = []
            while not drained.done():  # through the rest of A's drain and its stop
                statuses.append(post())
                ready.append(client.get("/readyz").status_code)
            drained.result()
            statuses.extend(post() for _ in range(10))
            assert served(a) == at_a, "A got traffic after the gateway saw it NOT_SERVING"
    assert settled_after < DRAIN
    assert set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200]}"
    assert ready and set(ready) == {200}, "B serves, so the gateway stays ready"


class HungHealth:
    """A health service that never answers, on a server that accepts calls (a stalled pod)."""

    def __init__(self) -> None:
        self.forever = asyncio.Event()

    async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:  # noqa: N802
        await self.forever.wait()
        return health_pb2.HealthCheckResponse()

    async def Watch(self, request: Any, context: Any) -> None:  # noqa: N802
        await self.forever.wait()

    async def List(self, request: Any, context: Any) -> health_pb2.HealthListResponse:  # noqa: N802
        await self.forever.wait()
        return health_pb2.HealthListResponse()


@pytest.fixture
def hung_port() -> Iterator[int]:
    loop = LoopThread("hung-upstream")

    async def start() -> tuple[aio.Server, int]:
        server = aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(HungHealth(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    try:
        yield port
    finally:
        loop.run(server.stop(0))
        loop.close()


def test_readiness_answers_at_once_beside_a_stalled_upstream(model_base: Path, hung_port: int) -> None:
    """One Health.Check through the balancer reached the stalled pod every other time and waited out its
    timeout (2 s, then 503); now readiness is the channel's own view: one serving address is enough."""
    with run_inference(model_base) as b:
        settings = GatewaySettings(inference=f"ipv4:127.0.0.1:{hung_port},127.0.0.1:{b.port}", default_model=MODEL)
        with run_gateway(settings) as gateway, gateway.client() as client:
            first = client.get("/readyz")  # the first connections are made here
            timings = []
            for _ in range(10):
                start = time.monotonic()
                assert client.get("/readyz").status_code == 200
                timings.append(time.monotonic() - start)
    assert first.status_code == 200
    assert max(timings) < 1.0, timings


def test_readiness_fails_fast_when_no_upstream_is_reachable() -> None:
    with refusing_port() as p1, refusing_port() as p2:
        settings = GatewaySettings(inference=f"ipv4:127.0.0.1:{p1},127.0.0.1:{p2}", default_model=MODEL)
        with run_gateway(settings) as gateway, gateway.client() as client:
            client.get("/readyz")  # connection attempts fail: the channel turns TRANSIENT_FAILURE
            start = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - start
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "the inference service is not ready"
    assert elapsed < 1.0
