"""Real servers on ephemeral ports for the gateway's tests and benchmark: tfic's inference service (in a
thread with its own event loop) and the gateway on uvicorn (in another thread).

Readiness is awaited with gRPC health ``Watch`` streams and uvicorn's startup event, never with sleeps.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from starlette.applications import Starlette

from gateway.main import GatewayServer, build_server
from gateway.settings import GatewaySettings

T = TypeVar("T")

MODEL = "tiny"
SECOND_MODEL = "tiny2"
LABELS = ("cat", "dog", "épée")  # a non-ASCII label: bodies are UTF-8, not \u-escaped
IMAGE_SHAPE = (16, 16, 3)


class LoopThread:
    """An event loop running in a daemon thread; ``run`` executes a coroutine on it and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused for as long as the block lasts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def wait_serving(port: int, services: tuple[str, ...], timeout: float = 120) -> None:
    """Block until every health service reports SERVING, on a server-streaming ``Watch``.

    Fallback while tfic.grpc_errors.ErrorInterceptor breaks ``Watch`` (it wraps every unary-stream
    handler with ``async for``, but grpc_health's ``Watch`` is a coroutine writing with
    ``context.write``, so the call fails with INTERNAL): ``Check`` until SERVING, bounded by ``timeout``.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            request = health_pb2.HealthCheckRequest(service=service)
            try:
                for response in stub.Watch(request, timeout=timeout):
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                continue
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.INTERNAL:
                    raise
            pause = threading.Event()
            while stub.Check(request, timeout=timeout).status != health_pb2.HealthCheckResponse.SERVING:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} is not SERVING after {timeout} s")
                pause.wait(0.02)


@dataclass
class RunningInference:
    port: int
    server: Any  # inference_svc.server.InferenceServer
    loop: LoopThread

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def run_inference(base: Path, **overrides: Any) -> Iterator[RunningInference]:
    from inference_svc.server import InferenceServer
    from inference_svc.settings import BatchingSettings, Settings, VersionPolicy

    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": -1,
        "model_base_path": base,
        "version_policy": VersionPolicy("all"),
        "poll_interval_seconds": 30.0,
        "batching": BatchingSettings(max_batch_size=4, batch_timeout_micros=500),
        "decode_workers": 2,
        "warmup_iterations": 1,
        "drain_seconds": 0.0,
        "shutdown_grace_seconds": 1.0,
    }
    settings = Settings(**{**values, **overrides})
    loop = LoopThread("inference-loop")
    server = InferenceServer(settings)
    try:
        loop.run(server.start())
        wait_serving(server.port, ("tfic.v1.Classifier", *(p.name for p in base.iterdir() if p.is_dir())))
        yield RunningInference(server.port, server, loop)
    finally:
        loop.run(server.stop(grace=1.0))
        loop.close()


@dataclass
class RunningGateway:
    url: str
    server: GatewayServer
    settings: GatewaySettings

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


@contextmanager
def run_gateway(settings: GatewaySettings, app: Starlette | None = None) -> Iterator[RunningGateway]:
    """The gateway on uvicorn in a thread; ``app`` (built from ``settings``) lets a test wrap the app."""
    server = build_server(replace(settings, host="127.0.0.1", port=0), app)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(30) or server.port is None:
            raise RuntimeError("the gateway did not start")
        yield RunningGateway(f"http://127.0.0.1:{server.port}", server, settings)
    finally:
        server.should_exit = True
        thread.join(30)


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()
