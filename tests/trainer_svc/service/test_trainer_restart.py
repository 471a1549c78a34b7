"""Kill the server process (SIGKILL) in the middle of a job, start it again: the job resumes and completes.

The server runs as a subprocess (``python -m trainer_svc``, via ``LocalTrainer``); a thread watches the model
folder the whole time and records any version directory that is visible without its ``saved_model.pb``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from trainer_harness import spec

from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc
from trainer_svc.service.local import LocalTrainer
from trainer_svc.service.process import is_worker_alive
from trainer_svc.service.store import SqliteJobStore

T = TypeVar("T")


def _poll(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path, data_root: Path) -> Iterator[LocalTrainer]:
    trainer = LocalTrainer(tmp_path / "state", tmp_path / "models", [data_root], log_path=tmp_path / "server.log")
    yield trainer
    trainer.stop(timeout=10)


class _VersionWatcher(threading.Thread):
    """Records every moment a version directory is visible without its saved_model.pb."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(daemon=True)
        self.model_dir = model_dir
        self.partial: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            for entry in list(self.model_dir.iterdir()) if self.model_dir.is_dir() else []:
                if entry.name.isdigit() and not (entry / "saved_model.pb").is_file():
                    self.partial.append(entry.name)


def _kind(event: pb.TrainingEvent) -> str:
    return event.WhichOneof("event") or ""


def test_a_job_survives_a_killed_server(server: LocalTrainer) -> None:
    server.start()
    model_dir = server.model_base_path / "survivor"
    watcher = _VersionWatcher(model_dir)
    watcher.start()
    with grpc.insecure_channel(server.address) as channel:
        stub = trainer_pb2_grpc.TrainerStub(channel)
        job = stub.CreateTrainingJob(
            pb.CreateTrainingJobRequest(name="survivor", spec=spec(epochs=8, model_name="survivor"))
        )
        for event in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job=job.job_id)):
            if _kind(event) == "message" and event.message.startswith("checkpoint saved"):
                break

    store = SqliteJobStore(server.state_dir / "trainer.db")
    worker_pid = store.get(job.job_id).worker_pid
    store.close()
    assert worker_pid is not None
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    _poll(lambda: not is_worker_alive(worker_pid, job.job_id), 30, "the worker to die with the server")
    assert [p.name for p in model_dir.glob("*") if p.name.isdigit()] == []  # nothing published yet

    server.start()
    with grpc.insecure_channel(server.address) as channel:
        stub = trainer_pb2_grpc.TrainerStub(channel)
        events = list(stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job="survivor")))
        final = stub.GetTrainingJob(pb.GetTrainingJobRequest(job="survivor"))
    watcher.done.set()
    watcher.join()

    assert final.state == pb.JOB_STATE_COMPLETED, final.failure_reason
    assert final.attempt == 2
    assert final.output.version == 1
    resume_seq = next(e.sequence for e in events if e.message == "resuming from the last checkpoint (attempt 2)")
    epochs_after = [e.epoch.epoch for e in events if _kind(e) == "epoch" and e.sequence > resume_seq]
    assert epochs_after[0] > 1, "the second attempt started from scratch instead of the checkpoint"
    assert epochs_after[-1] == 8
    assert [e.state for e in events if _kind(e) == "state"][-1] == pb.JOB_STATE_COMPLETED
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # one complete version, no .tmp-* left
    assert watcher.partial == []

    assert server.stop() == 0  # SIGTERM: a graceful shutdown
