"""Helpers of the inference service tests: model export, settings, polling, gated runtimes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from inference_svc.runtime.base import Runtime
from inference_svc.settings import BatchingSettings, Settings
from tfic.modeldir import ModelMetadata

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny"
SIZE = 16
LABELS = ("cat", "dog", "fish")


def export_model(base: Path, name: str, size: int, seed: int, labels: tuple[str, ...] = LABELS) -> Path:
    """A real small CNN with a sharpened head (so predictions depend visibly on the pixels)."""
    from tfic.modeldir import Preprocessing
    from trainer_svc.training import architectures
    from trainer_svc.training.export import export_version
    from trainer_svc.training.model import build_classifier

    shape = (size, size, 3)
    model = build_classifier(architectures.small_cnn(shape), len(labels), shape, Preprocessing(), 0.0, 0.0, seed)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 25.0, bias])
    _, path = export_version(base, name, model, ModelMetadata(labels=labels, image_shape=shape))
    return path


def publish_copy(src: Path, model_dir: Path, version: int) -> Path:
    """Copy a version directory and publish it atomically (staging dir + one rename), like the trainer."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    target = model_dir / str(version)
    os.rename(tmp, target)
    return target


def publish_broken(src: Path, model_dir: Path, version: int) -> Path:
    """A version whose saved_model.pb is garbage (its metadata intact)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    (tmp / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    target = model_dir / str(version)
    os.rename(tmp, target)
    return target


def make_settings(base: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "model_base_path": base,
        "poll_interval_seconds": 0.05,
        "decode_workers": 2,
        "warmup_iterations": 1,
        "batching": BatchingSettings(max_batch_size=8, batch_timeout_micros=2000),
        "drain_seconds": 0.0,
        "shutdown_grace_seconds": 2.0,
        "max_image_bytes": 2 * 1024 * 1024,
        "max_pixels": 4_000_000,
        "max_request_bytes": 8 * 1024 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


def with_batching(settings: Settings, **values: Any) -> Settings:
    return replace(settings, batching=replace(settings.batching, **values))


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 60.0, what: str = "", interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (never a bare sleep).

    ``interval=0`` checks after every turn of the event loop, for states that other tasks reach at once
    and that last only briefly.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(interval)


def encode(pixels: np.ndarray, fmt: str = "PNG", **params: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **params)
    return buf.getvalue()


def random_image(seed: int, height: int = 40, width: int = 50) -> np.ndarray:
    """A smooth random picture (blobs of colour): predictions differ between seeds, resizing changes little."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


class GatedRuntime(Runtime):
    """Wraps a real runtime; while the gate is closed ``predict`` blocks, so queues fill deterministically."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def predict(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls.append(len(images))
        self.gate.wait(timeout=60)
        return self.inner.predict(images)

    def close(self) -> None:
        self.gate.set()
        self.inner.close()


class GatedFactory:
    """A runtime factory building real TensorFlow runtimes, each behind its own gate."""

    def __init__(self) -> None:
        from inference_svc.runtime.tensorflow import TensorFlowRuntimeFactory

        self.inner = TensorFlowRuntimeFactory()
        self.runtimes: list[GatedRuntime] = []

    def __call__(self, model: str, version: int, path: Path, metadata: ModelMetadata) -> Runtime:
        runtime = GatedRuntime(self.inner(model, version, path, metadata))
        self.runtimes.append(runtime)
        return runtime


@contextlib.asynccontextmanager
async def gated_server(
    base: Path, max_enqueued_batches: int, **overrides: Any
) -> AsyncIterator[tuple[Any, GatedFactory]]:
    """A real server whose model runs only when a test opens its runtime's gate (batches of 2, one batch thread);
    ``overrides`` are other settings."""
    from inference_svc.server import InferenceServer

    factory = GatedFactory()
    batching = BatchingSettings(
        max_batch_size=2, num_batch_threads=1, max_enqueued_batches=max_enqueued_batches, batch_timeout_micros=0
    )
    server = await InferenceServer(make_settings(base, batching=batching, **overrides), factory).start()
    await wait_until(lambda: server.repository.available(MODEL), what="the model to load")
    try:
        yield server, factory
    finally:
        for runtime in factory.runtimes:
            runtime.gate.set()
        await server.stop(grace=1.0)


@dataclass
class EntryPoint:
    """A running ``python -m inference_svc``: its process, gRPC port and the log lines read so far."""

    process: subprocess.Popen[str]
    port: int
    log: list[str]


@contextlib.contextmanager
def run_entry_point(base: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[EntryPoint]:
    """``python -m inference_svc`` as deployed, on a free port; yields once it says where it listens."""
    environ = {**os.environ, "TFIC_MODEL_BASE_PATH": str(base), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "inference_svc", "--log-level", "info", "--host", "127.0.0.1", "--port", "0"]
    command += ["--metrics-port", "-1", *flags]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environ, cwd=ROOT)
    try:
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            found = re.search(r"listening on [\d.]+:(\d+)", line)
            if found:
                yield EntryPoint(process, int(found.group(1)), lines)
                return
        raise AssertionError("the server never said where it listens:\n" + "".join(lines[-20:]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def wait_serving(channel: grpc.Channel, service: str, timeout: float = 120.0) -> None:
    """Block until the health service reports ``service`` SERVING (a Watch stream, no polling)."""
    request = health_pb2.HealthCheckRequest(service=service)
    for response in health_pb2_grpc.HealthStub(channel).Watch(request, timeout=timeout):
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return
