"""Helpers for the Trainer service tests: settings, requests, and polling with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc
from trainer_svc.service.server import TrainerServer
from trainer_svc.service.settings import TrainerSettings

T = TypeVar("T")

# A tiny, fast run: 8×8 digits upsampled to 16×16, a small CNN.
TINY = {"model": "small_cnn", "image_shape": "3,16,16", "batch_size": "32", "learning_rate": "0.003", "seed": "7"}
TERMINAL = (pb.JOB_STATE_COMPLETED, pb.JOB_STATE_FAILED, pb.JOB_STATE_STOPPED)


def make_settings(state_root: Path, data_root: Path, **overrides: Any) -> TrainerSettings:
    base = TrainerSettings(
        state_dir=state_root / "state",
        model_base_path=state_root / "models",
        data_roots=(data_root,),
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        stop_grace_seconds=20.0,
        shutdown_grace_seconds=1.0,
    )
    return replace(base, **overrides)


def spec(
    uri: str = "digits", epochs: int = 2, model_name: str = "digits", validation: str | None = None, **extra: str
) -> pb.TrainingJobSpec:
    channels = [pb.InputChannel(name="train", uri=uri)]
    if validation is not None:
        channels.append(pb.InputChannel(name="validation", uri=validation))
    return pb.TrainingJobSpec(
        channels=channels,
        hyperparameters=pb.Hyperparameters(epochs=epochs, extra={**TINY, **extra}),
        model_name=model_name,
    )


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 120.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Running:
    server: TrainerServer
    settings: TrainerSettings
    channel: grpc.aio.Channel
    stub: trainer_pb2_grpc.TrainerAsyncStub

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    async def create(self, name: str, job_spec: pb.TrainingJobSpec, request_id: str = "") -> pb.TrainingJob:
        return await self.stub.CreateTrainingJob(
            pb.CreateTrainingJobRequest(name=name, spec=job_spec, request_id=request_id)
        )

    async def get(self, job: str) -> pb.TrainingJob:
        return await self.stub.GetTrainingJob(pb.GetTrainingJobRequest(job=job))

    async def wait_state(self, job: str, *states: int, timeout: float = 120.0) -> pb.TrainingJob:
        async def check() -> pb.TrainingJob | None:
            current = await self.get(job)
            return current if current.state in states else None

        names = ", ".join(pb.JobState.Name(s) for s in states)
        return await eventually(check, timeout, f"job {job} to reach {names}")

    async def watch(self, job: str, until: Callable[[pb.TrainingEvent], bool] | None = None) -> list[pb.TrainingEvent]:
        """Events until the stream ends (the job ended) or ``until`` is true for one."""
        events: list[pb.TrainingEvent] = []
        call = self.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job=job))
        async for event in call:
            events.append(event)
            if until is not None and until(event):
                call.cancel()
                break
        return events


StartTrainer = Callable[..., Awaitable[Running]]


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded; expected an error")


def states_of(events: list[pb.TrainingEvent]) -> list[int]:
    return [e.state for e in events if e.WhichOneof("event") == "state"]


def model_versions(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
