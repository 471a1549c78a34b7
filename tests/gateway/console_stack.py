"""The console's whole stack on loopback for the browser tests and the screenshot script: a real Trainer (its
jobs train in real worker processes), the real inference service over the Trainer's model repository, and
the gateway in front with the console on, the Trainer's address and a bearer token.

The repository starts with ``tiny`` (a working 3-class model) and gains ``broken`` version 1, whose
``saved_model.pb`` is garbage, once the inference service is up: it shows FAILED with its reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gateway.settings import GatewaySettings
from tests.gateway.servers import LoopThread, RunningGateway, RunningInference, run_gateway, run_inference
from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc

TOKEN = "console-test-token"
BROKEN = "broken"
# A tiny, fast job: 8×8 digits upsampled to 16×16, a small CNN (as the Trainer's own tests train).
TINY_JOB = {"model": "small_cnn", "image_shape": "3,16,16", "batch_size": "32", "learning_rate": "0.003", "seed": "7"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass
class ConsoleStack:
    gateway: RunningGateway
    inference: RunningInference
    trainer_target: str
    model_base: Path
    digits: Path

    def trainer(self) -> grpc.Channel:
        return grpc.insecure_channel(self.trainer_target)

    def start_job(self, name: str, epochs: int, model_name: str = "digits") -> pb.TrainingJob:
        with self.trainer() as channel:
            request = pb.CreateTrainingJobRequest(
                name=name,
                spec=pb.TrainingJobSpec(
                    channels=[pb.InputChannel(name="train", uri="digits")],
                    hyperparameters=pb.Hyperparameters(epochs=epochs, extra=TINY_JOB),
                    model_name=model_name,
                ),
            )
            job: pb.TrainingJob = trainer_pb2_grpc.TrainerStub(channel).CreateTrainingJob(request, timeout=30)
            return job

    def wait_job(self, job: str, timeout: float = 300) -> pb.TrainingJob:
        """Block until the job ends, on its Watch stream (which ends when the job does)."""
        with self.trainer() as channel:
            stub = trainer_pb2_grpc.TrainerStub(channel)
            for _ in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job=job), timeout=timeout):
                pass
            done: pb.TrainingJob = stub.GetTrainingJob(pb.GetTrainingJobRequest(job=job), timeout=30)
            return done


def publish_broken(source_version: Path, model_dir: Path) -> Path:
    """Version 1 of a model whose saved_model.pb is garbage (its metadata intact), renamed into place whole."""
    tmp = model_dir.parent / f".tmp-{model_dir.name}"
    shutil.copytree(source_version, tmp / "1")
    (tmp / "1" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    os.rename(tmp, model_dir)
    return model_dir / "1"


@contextmanager
def console_stack(work: Path, seed_models: Path, token: str | None = TOKEN) -> Iterator[ConsoleStack]:
    """``seed_models``: a repository holding ``tiny/1`` (tests/gateway/conftest.py's ``model_base``)."""
    from tests.trainer_svc.service.trainer_harness import make_settings
    from tfic_demo.digits import write_digits
    from trainer_svc.service.server import TrainerServer

    base = work / "models"
    base.mkdir(parents=True)
    shutil.copytree(seed_models / "tiny" / "1", base / "tiny" / "1")
    data_root = work / "data"
    digits = write_digits(data_root / "digits", per_class=40)
    settings = make_settings(work, data_root, state_dir=work / "trainer", model_base_path=base)
    loop = LoopThread("trainer-loop")
    trainer = TrainerServer(settings)
    try:
        port = loop.run(trainer.start())
        # Short polls: the broken version, and the versions jobs publish, show up within half a second.
        with run_inference(base, poll_interval_seconds=0.5) as inference:
            publish_broken(base / "tiny" / "1", base / BROKEN)
            gateway_settings = GatewaySettings(
                inference=inference.target, trainer=f"127.0.0.1:{port}", auth_token=token, default_model="tiny"
            )
            with run_gateway(gateway_settings) as gateway:
                yield ConsoleStack(gateway, inference, f"127.0.0.1:{port}", base, digits)
    finally:
        loop.run(trainer.stop())
        loop.close()


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """Debian's headless Chromium through its chromedriver: Selenium is given both paths, so its Selenium Manager
    (which would download a browser) never runs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = browser_missing()
    if missing:
        raise RuntimeError(missing)
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} missing: run scripts/ensure_browser.sh (as root: apt-get installs them)"
    return None
