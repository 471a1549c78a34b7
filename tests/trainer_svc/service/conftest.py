"""Fixtures: a data root holding the digits, and real Trainer servers on port 0 (in this process)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from trainer_harness import Running, StartTrainer, make_settings

from tfic.v1 import trainer_pb2_grpc
from trainer_svc.service.server import TrainerServer


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Path:
    """A folder the servers accept as their only data root, holding ``digits/`` (400 PNGs, 10 classes)."""
    root = tmp_path_factory.mktemp("data-root")
    shutil.copytree(digits_dir, root / "digits")
    return root


@pytest.fixture
async def start_trainer(tmp_path: Path, data_root: Path) -> AsyncIterator[StartTrainer]:
    """Start a server (settings overridable) with a client channel; everything stops at teardown."""
    started: list[Running] = []

    async def start(**overrides: Any) -> Running:
        settings = make_settings(tmp_path, data_root, **overrides)
        server = TrainerServer(settings)
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        running = Running(server, settings, channel, trainer_pb2_grpc.TrainerStub(channel))
        started.append(running)
        return running

    yield start
    for running in started:
        await running.channel.close()
        await running.server.stop()


@pytest.fixture
async def idle_trainer(start_trainer: StartTrainer) -> Running:
    """A server that accepts jobs but starts none (--max-concurrent-jobs 0): API tests without TensorFlow."""
    return await start_trainer(max_concurrent_jobs=0)
