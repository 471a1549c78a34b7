"""``tfic up``: the trainer, the inference service and the gateway together on this machine.

Each service runs as its own process (as it would in its own container), on loopback ports.
``--demo`` then does the main job end to end through them: write the digits dataset, train it
through the Trainer service (full training, then transfer learning from EfficientNet-Lite0), wait
for the inference service to load the new versions, evaluate, and classify sample images through
the gateway with each Accept type and through gRPC. Ctrl-C (or SIGTERM) stops all three cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tfic.errors import FailedPrecondition, Unavailable
from tfic.settings import add_arguments, check, from_args, setting


@dataclass(frozen=True)
class UpSettings:
    ENV_PREFIX: ClassVar[str] = "TFIC_UP_"

    workdir: Path = setting(Path("tfic-local"), "models, trainer state, data and logs go here")
    data_roots: tuple[Path, ...] = setting(
        (),
        "a folder training jobs may read local data from (repeatable; default: WORKDIR/data)",
        flag="--data-root",
        env="TFIC_UP_DATA_ROOTS",
        repeatable=True,
        metavar="DIR",
    )
    trainer_port: int = setting(0, "the trainer's gRPC port (0 picks a free port)", minimum=0, maximum=65535)
    inference_port: int = setting(
        0, "the inference service's gRPC port (0 picks a free port)", minimum=0, maximum=65535
    )
    gateway_port: int = setting(0, "the gateway's HTTP port (0 picks a free port)", minimum=0, maximum=65535)
    demo: bool = setting(False, "train and classify the embedded digits dataset")
    exit: bool = setting(False, "stop the services when the demo is done")
    epochs: int = setting(12, "demo: epochs of full training", minimum=1)
    transfer_epochs: int = setting(10, "demo: frozen-backbone epochs of transfer learning (0 skips it)", minimum=0)

    def __post_init__(self) -> None:
        check(self)


def configure(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(p, UpSettings)
    p.set_defaults(handler=lambda args: run(from_args(UpSettings, args)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One ``tfic serve NAME`` child process with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", "tfic_cli", "--log-level", "info", "serve", name, *argv]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise Unavailable(
                f"the {self.name} service exited with status {self.process.returncode}:\n" + "\n".join(tail)
            )

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(what: str, ready: Callable[[], bool], services: list[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for s in services:
            s.check_alive()
        try:
            if ready():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise Unavailable(f"{what} was not ready within {timeout:.0f}s")
        time.sleep(0.2)


def _check_all(services: list[Service]) -> None:
    for s in services:
        s.check_alive()


def _grpc_serving(address: str, service: str = "") -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=2).status_code == 200


def run(settings: UpSettings) -> int:
    work: Path = settings.workdir.resolve()
    models, data_root, logs = work / "models", work / "data", work / "logs"
    for d in (models, data_root, logs):
        d.mkdir(parents=True, exist_ok=True)
    # The demo writes its dataset under WORKDIR/data, which is a root whatever else is given.
    roots = [data_root, *(r.resolve() for r in settings.data_roots if r.resolve() != data_root)]
    root_flags = [word for r in roots for word in ("--data-root", str(r))]
    ports = {k: getattr(settings, f"{k}_port") or _free_port() for k in ("trainer", "inference", "gateway")}
    trainer_addr = f"127.0.0.1:{ports['trainer']}"
    inference_addr = f"127.0.0.1:{ports['inference']}"
    gateway_url = f"http://127.0.0.1:{ports['gateway']}"
    services = [
        Service("trainer", ["--host", "127.0.0.1", "--port", str(ports["trainer"]), "--metrics-port", "0",
                            "--state-dir", str(work / "trainer-state"), "--model-base-path", str(models),
                            *root_flags], logs / "trainer.log"),
        Service("inference", ["--host", "127.0.0.1", "--port", str(ports["inference"]), "--metrics-port", "0",
                              "--model-base-path", str(models), "--poll-interval-seconds", "1"],
                logs / "inference.log"),
        Service("gateway", ["--host", "127.0.0.1", "--port", str(ports["gateway"]), "--inference", inference_addr,
                            "--trainer", trainer_addr], logs / "gateway.log"),
    ]  # fmt: skip

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        for s in services:
            s.start()
        _wait("the trainer", lambda: _grpc_serving(trainer_addr, "tfic.v1.Trainer"), services, 120)
        _wait("the inference service", lambda: _grpc_serving(inference_addr), services, 120)
        _wait("the gateway", lambda: _http_ok(f"{gateway_url}/healthz"), services, 120)
        print(f"trainer    gRPC {trainer_addr}      (tfic jobs ... --server {trainer_addr})")
        print(f"inference  gRPC {inference_addr}      (tfic predict --server {inference_addr} ...)")
        print(f"gateway    HTTP {gateway_url}  (curl --data-binary @img.png -H 'Content-Type: application/x-image' "
              f"{gateway_url}/models/NAME/invocations)")  # fmt: skip
        print(f"console    {gateway_url}/console/  (try a model, the models, the jobs, the API docs)")
        print(f"models in {models}, logs in {logs}")
        print(f"training data: local paths under {', '.join(map(str, roots))} (more with --data-root DIR), or s3://",
              flush=True)  # fmt: skip
        if settings.demo:
            from tfic_demo.flow import DemoEndpoints, run_demo

            code = run_demo(
                DemoEndpoints(trainer_addr, inference_addr, gateway_url, work, models, data_root),
                epochs=settings.epochs,
                transfer_epochs=settings.transfer_epochs,
                check_alive=lambda: _check_all(services),
            )
            if settings.exit or code != 0:
                return code
        print("\nserving; press Ctrl-C to stop", flush=True)
        while True:
            for s in services:
                s.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        # Ctrl-C and SIGTERM are how `tfic up` is meant to end: a clean stop, exit status 0.
        print("\nstopping", file=sys.stderr)
        return 0
    except FailedPrecondition as exc:
        print(f"tfic up: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        # Gateway first (no new requests), then inference, then the trainer.
        for s in reversed(services):
            s.stop()
    return 0


def print_json(data: Any) -> None:
    print(json.dumps(data), flush=True)
