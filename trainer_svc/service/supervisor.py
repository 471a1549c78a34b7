"""Worker processes of running jobs: launch one per job, follow its events, stop it, and settle how it ended.

* A worker appends its events to the store and rings the doorbell (one line on its stdout); the
  supervisor reads the new events, keeps the job's last metrics and output current, and wakes watchers.
* Stop: Stopping → SIGTERM (cooperative stop at the next batch) → SIGKILL to the process group
  after ``stop_grace_seconds`` → Stopped; the job's work and cache folders are removed.
* A job's terminal state is recorded only after its temporary files are gone (:meth:`Supervisor.end`).

State transitions hold the runner's lock (passed in), so the queue and the workers never disagree.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfic.modeldir import clean_stale_staging
from trainer_svc.service import process
from trainer_svc.service.jobs import EPOCH, ERROR, MESSAGE, MODEL, EpochMetrics, Job, JobState, ModelOutput
from trainer_svc.service.metrics import TrainerMetrics
from trainer_svc.service.offload import Offload
from trainer_svc.service.settings import TrainerSettings
from trainer_svc.service.store import JobStore, NewEvent, state_event
from trainer_svc.service.watchers import Changes

log = logging.getLogger(__name__)


def message_event(text: str) -> NewEvent:
    return NewEvent(MESSAGE, {"message": text})


@dataclass
class WorkerSlot:
    """A job that holds a worker slot, from launch until its worker has exited and been accounted for."""

    job_id: str
    model_name: str
    attempt: int = 0
    worker: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    last_seq: int = 0
    output: ModelOutput | None = None
    error: str | None = None
    stop_requested: bool = False
    killer: asyncio.Task[None] | None = None  # SIGKILL after the stop grace period
    interrupted: bool = False  # stopped because the server shuts down: resume on the next start
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    def signal(self, sig: signal.Signals) -> None:
        if self.worker is not None and self.worker.returncode is None:
            process.signal_group(self.worker.pid, sig)


class Supervisor:
    """The running jobs' worker processes (``slots``), for :class:`~trainer_svc.service.runner.JobRunner`."""

    def __init__(
        self,
        store: JobStore,
        settings: TrainerSettings,
        offload: Offload,
        changes: Changes,
        lock: asyncio.Lock,
        metrics: TrainerMetrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._offload = offload
        self._changes = changes
        self._lock = lock
        self.slots: dict[str, WorkerSlot] = {}
        self.closing = False  # the server shuts down: workers started now are stopped at once

    def job_dir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def start(self, job_id: str, on_exit: Callable[[], Awaitable[None]]) -> WorkerSlot:
        """Take a slot for ``job_id`` and run its worker in a task; ``on_exit`` runs once the slot is free."""
        slot = WorkerSlot(job_id, "")
        self.slots[job_id] = slot
        slot.task = asyncio.create_task(self._run(slot, on_exit), name=f"trainer-job-{job_id}")
        return slot

    def request_stop(self, slot: WorkerSlot) -> None:
        """SIGTERM now (the worker stops at its next batch), SIGKILL after the stop grace period."""
        slot.stop_requested = True
        slot.signal(signal.SIGTERM)
        slot.killer = asyncio.create_task(self._kill_after(slot, self.settings.stop_grace_seconds))

    async def _run(self, slot: WorkerSlot, on_exit: Callable[[], Awaitable[None]]) -> None:
        try:
            if await self._launch(slot):
                await self._follow(slot)
        except Exception:
            log.exception("job %s: the runner failed", slot.job_id)
            slot.signal(signal.SIGKILL)
            if not self.closing:
                job = await self._offload.db(self.store.get, slot.job_id)
                await self.end(job, JobState.FAILED, "internal error in the trainer; see the server log")
        finally:
            slot.exited.set()
            del self.slots[slot.job_id]
            if not self.closing:
                await on_exit()

    async def _launch(self, slot: WorkerSlot) -> bool:
        db = self._offload.db
        async with self._lock:
            job = await db(self.store.get, slot.job_id)
            if job.state not in (JobState.PENDING, JobState.IN_PROGRESS):
                return False
            resume = job.state == JobState.IN_PROGRESS
            slot.attempt, slot.model_name = job.attempt + 1, job.spec.model_name
            event = (
                message_event(f"resuming from the last checkpoint (attempt {slot.attempt})")
                if resume
                else state_event(JobState.IN_PROGRESS)
            )
            job = await db(
                self.store.update,
                job.job_id,
                event=event,
                attempt=slot.attempt,
                state=JobState.IN_PROGRESS,
                start_time=job.start_time or time.time(),
            )
            slot.last_seq = (await db(self.store.events, job.job_id, 0))[-1].seq
            job_dir = self.job_dir(job.job_id)
            argv = process.worker_argv(
                database=self.settings.database,
                job_id=job.job_id,
                attempt=slot.attempt,
                work_dir=job_dir / "work",
                cache_dir=job_dir / "cache",
                model_base_path=self.settings.model_base_path,
                data_roots=self.settings.data_roots,
                s3_endpoint_url=self.settings.s3_endpoint_url,
                resume=resume,
            )
            try:
                slot.worker = await process.spawn(
                    argv, job_dir / "worker.log", process.worker_env(self.settings.worker_env)
                )
            except OSError as exc:
                log.error("job %s: cannot start a worker: %s", job.name, exc)
                await self.end(job, JobState.FAILED, f"could not start a worker process: {exc.strerror or exc}")
                return False
            await db(self.store.update, job.job_id, worker_pid=slot.worker.pid)
            log.info("job %s: worker %d started (attempt %d)", job.name, slot.worker.pid, slot.attempt)
            if self.closing:
                slot.interrupted = True
                slot.signal(signal.SIGTERM)
        self._changes.notify(job.job_id)
        return True

    async def _follow(self, slot: WorkerSlot) -> None:
        worker = slot.worker
        assert worker is not None and worker.stdout is not None
        while await worker.stdout.readline():
            await self.ingest(slot)
        returncode = await worker.wait()
        slot.exited.set()
        await self.ingest(slot)
        await self._finish(slot, returncode)

    async def ingest(self, slot: WorkerSlot, observe: bool = True) -> None:
        """Read the worker's new events; keep the job's last metrics and output current."""
        events = await self._offload.db(self.store.events, slot.job_id, slot.last_seq)
        changes: dict[str, Any] = {}
        for event in events:
            slot.last_seq = event.seq
            if event.attempt != slot.attempt:
                continue
            if event.type == EPOCH:
                metrics = EpochMetrics.from_event(event.data)
                changes["last_metrics"] = metrics
                if observe and self.metrics is not None:
                    self.metrics.epoch_duration.observe(metrics.seconds)
                    self.metrics.images_per_second.set(metrics.images_per_second)
            elif event.type == MODEL:
                slot.output = changes["output"] = ModelOutput.from_event(event.data)
            elif event.type == ERROR:
                slot.error = str(event.data.get("message") or "")
        if changes:
            await self._offload.db(self.store.update, slot.job_id, **changes)
        if events:
            self._changes.notify(slot.job_id)

    async def _finish(self, slot: WorkerSlot, returncode: int) -> None:
        async with self._lock:
            job = await self._offload.db(self.store.get, slot.job_id)
            log.info("job %s: worker %s", job.name, process.describe_exit(returncode))
            if slot.output is not None:
                await self.end(job, JobState.COMPLETED, "", slot.output)
            elif slot.stop_requested or job.state == JobState.STOPPING:
                await self.end(job, JobState.STOPPED, "", killed=returncode < 0)
            elif slot.interrupted:
                note = (
                    "the trainer shut down during training; the job resumes from its last checkpoint when it restarts"
                )
                await self._offload.db(self.store.update, job.job_id, event=message_event(note), worker_pid=None)
                self._changes.notify(job.job_id)
            elif returncode == 0:
                await self.end(job, JobState.FAILED, "the worker exited without publishing a model version")
            else:
                where = self.job_dir(job.job_id) / "worker.log"
                reason = slot.error or f"the training worker {process.describe_exit(returncode)}; see {where}"
                await self.end(job, JobState.FAILED, reason, killed=returncode < 0)

    async def end(
        self, job: Job, state: JobState, reason: str, output: ModelOutput | None = None, killed: bool = False
    ) -> Job:
        """Remove the job's temporary files (its worker has exited), then record its terminal state: whoever
        sees the job ended finds no checkpoints, cache or half-written version of it left."""
        busy_models = {s.model_name for s in self.slots.values() if s.job_id != job.job_id}
        model_name = job.spec.model_name
        staging = self.settings.model_base_path / model_name if killed and model_name not in busy_models else None
        await self._offload.io(_remove_temporary, self.job_dir(job.job_id), staging)
        now = time.time()
        changes: dict[str, Any] = {"output": output} if output is not None else {}
        job = await self._offload.db(
            self.store.update,
            job.job_id,
            event=state_event(state, reason),
            state=state,
            end_time=now,
            failure_reason=reason,
            worker_pid=None,
            **changes,
        )
        self._changes.notify(job.job_id)
        if self.metrics is not None and job.start_time is not None:
            self.metrics.job_duration.observe(now - job.start_time)
        log.info("job %s: %s%s", job.name, state.value, f" ({reason})" if reason else "")
        return job

    async def stop_all(self) -> None:
        """Shutdown: SIGTERM every worker (their jobs stay InProgress and resume), SIGKILL the late ones."""
        self.closing = True
        slots = list(self.slots.values())
        for slot in slots:
            slot.interrupted = True
            slot.signal(signal.SIGTERM)
        tasks = [s.task for s in slots if s.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.stop_grace_seconds)
            if late:
                for slot in slots:
                    slot.signal(signal.SIGKILL)
                await asyncio.wait(late)

    async def _kill_after(self, slot: WorkerSlot, grace: float) -> None:
        try:
            await asyncio.wait_for(slot.exited.wait(), grace)
        except TimeoutError:
            log.warning("job %s: the worker did not stop within %.0fs; killing it", slot.job_id, grace)
            slot.signal(signal.SIGKILL)


def _remove_temporary(job_dir: Path, model_dir: Path | None) -> None:
    for name in ("work", "cache"):
        shutil.rmtree(job_dir / name, ignore_errors=True)
    if model_dir is not None:
        clean_stale_staging(model_dir)  # a version a killed worker was writing
