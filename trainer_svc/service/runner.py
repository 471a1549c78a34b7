"""The job runner: a FIFO queue, worker processes, stop, and recovery after a restart.

Transport-free (no gRPC): the servicer calls :meth:`JobRunner.create`, ``get``, ``list``, ``stop``
and ``watch``. Runs on one asyncio event loop; the store is used from one background thread, and
filesystem/S3 checks from a small pool, so the loop never blocks on them.

* At most ``max_concurrent_jobs`` workers run at once; other jobs wait Pending, oldest first.
* A worker appends its events to the store and rings the doorbell (one line on its stdout); the
  runner reads the new events, keeps the job's last metrics and output current, and wakes watchers.
* Stop: Stopping → SIGTERM (cooperative stop at the next batch) → SIGKILL to the process group
  after ``stop_grace_seconds`` → Stopped; the job's work and cache folders are removed.
* Shutdown: running workers are stopped the same way but their jobs stay InProgress, checkpoints
  kept. On start, every InProgress job without a live worker resumes from its last checkpoint
  (attempt + 1) ahead of the Pending ones, unless it already published its version (Completed) or
  used ``max_attempts`` (Failed, with the reason).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import shutil
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tfic.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tfic.modeldir import clean_stale_staging
from trainer_svc.service import process
from trainer_svc.service.jobs import (
    EPOCH,
    ERROR,
    MESSAGE,
    MODEL,
    EpochMetrics,
    Job,
    JobEvent,
    JobSpec,
    JobState,
    ModelOutput,
)
from trainer_svc.service.metrics import TrainerMetrics
from trainer_svc.service.settings import TrainerSettings
from trainer_svc.service.store import JobStore, NewEvent, state_event
from trainer_svc.service.validation import check_spec, validate_job_name

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_WATCH_RECHECK_SECONDS = 5.0  # a watcher re-reads the store this often even without a doorbell


def new_job_id() -> str:
    # The underscore keeps ids apart from job names, which cannot contain one.
    return f"tj_{uuid.uuid4().hex}"


def _message(text: str) -> NewEvent:
    return NewEvent(MESSAGE, {"message": text})


@dataclass
class _Slot:
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


class _Changes:
    """Wakes the watchers of a job when something about it changed."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def waiter(self, job_id: str) -> asyncio.Event:
        return self._events.setdefault(job_id, asyncio.Event())

    def notify(self, job_id: str) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        for job_id in list(self._events):
            self.notify(job_id)


class JobRunner:
    def __init__(self, store: JobStore, settings: TrainerSettings, metrics: TrainerMetrics | None = None) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._policy = settings.policy()
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="trainer-store")
        self._io_pool = ThreadPoolExecutor(4, thread_name_prefix="trainer-io")
        self._queue: deque[str] = deque()
        self._slots: dict[str, _Slot] = {}
        self._lock = asyncio.Lock()  # serialises state transitions
        self._changes = _Changes()
        self._closing = False

    # ----------------------------------------------------------------- plumbing

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, partial(fn, *args, **kwargs))

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, partial(fn, *args))

    def _job_dir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    async def _refresh_gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.set_job_counts(await self._db(self.store.count_by_state))
            self.metrics.queue_length.set(len(self._queue))

    # ----------------------------------------------------------------- API

    async def create(self, name: str, spec: JobSpec, request_id: str | None = None) -> Job:
        """Accept a job (Pending) after checking everything about it; idempotent on ``request_id``."""
        self._check_accepting()
        if request_id:
            earlier = await self._db(self.store.find_request, request_id)
            if earlier is not None:
                return self._same_request(earlier, name, request_id)
        validate_job_name(name)
        if await self._find(name) is not None:  # before the data checks, which may be slow (S3)
            raise AlreadyExists(f"a training job named {name!r} already exists", name=name)
        checked = await self._io(check_spec, name, spec, self._policy)
        job = Job(new_job_id(), name, JobState.PENDING, checked, time.time(), request_id=request_id or None)
        async with self._lock:
            self._check_accepting()
            job, created = await self._db(self.store.create, job)
            if not created:
                return self._same_request(job, name, request_id or "")
            self._queue.append(job.job_id)
            log.info("job %s (%s) accepted", job.name, job.job_id)
            self._schedule()
            await self._refresh_gauges()
        return job

    @staticmethod
    def _same_request(earlier: Job, name: str, request_id: str) -> Job:
        if earlier.name != name:
            raise InvalidArgument(
                f"request_id {request_id!r} was already used to create job {earlier.name!r}; use a new request_id",
                request_id=request_id,
            )
        return earlier

    async def get(self, ref: str) -> Job:
        return await self._db(self.store.get, ref)

    async def _find(self, ref: str) -> Job | None:
        try:
            return await self._db(self.store.get, ref)
        except NotFound:
            return None

    async def list_jobs(
        self, states: list[JobState], page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Job], str]:
        if page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {page_size}")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        jobs, cursor = await self._db(self.store.list_jobs, states, limit, _decode_token(page_token))
        return jobs, _encode_token(cursor)

    async def stop(self, ref: str) -> Job:
        """Pending → Stopped at once; InProgress → Stopping (SIGTERM now, SIGKILL after the grace period)."""
        async with self._lock:
            job = await self._db(self.store.get, ref)
            if job.state in (JobState.STOPPING, JobState.STOPPED):
                return job
            if job.state.terminal:
                raise FailedPrecondition(
                    f"job {job.name!r} already ended ({job.state.value}); there is nothing to stop"
                )
            slot = self._slots.get(job.job_id)
            if slot is None or slot.worker is None:  # queued (Pending, or InProgress waiting to resume)
                if job.job_id in self._queue:
                    self._queue.remove(job.job_id)
                job = await self._end(job, JobState.STOPPED, "")
            else:
                job = await self._db(
                    self.store.update, job.job_id, event=state_event(JobState.STOPPING), state=JobState.STOPPING
                )
                slot.stop_requested = True
                slot.signal(signal.SIGTERM)
                slot.killer = asyncio.create_task(self._kill_after(slot, self.settings.stop_grace_seconds))
            await self._refresh_gauges()
        self._changes.notify(job.job_id)
        log.info("job %s: stop requested (%s)", job.name, job.state.value)
        return job

    async def watch(self, ref: str) -> AsyncIterator[JobEvent]:
        """Every event of the job from the first, then live ones; ends after its terminal state."""
        job = await self._db(self.store.get, ref)
        seen = 0
        while True:
            waiter = self._changes.waiter(job.job_id)
            job = await self._db(self.store.get, job.job_id)
            for event in await self._db(self.store.events, job.job_id, seen):
                seen = event.seq
                yield event
            if job.state.terminal:
                self._changes.notify(job.job_id)  # drops the waiter (and wakes any other watcher early)
                return
            if self._closing:
                raise Unavailable("the trainer is shutting down; watch the job again once it is back")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), _WATCH_RECHECK_SECONDS)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Recover what a previous server left (see the module docstring), then start the queue."""
        resumed: list[str] = []
        pending: list[str] = []
        for job in await self._db(self.store.active):
            if job.state == JobState.PENDING:
                pending.append(job.job_id)
            elif await self._recover(job):
                resumed.append(job.job_id)
        self._queue.extend([*resumed, *pending])
        if resumed or pending:
            log.info("recovered %d interrupted and %d pending jobs", len(resumed), len(pending))
        self._schedule()
        await self._refresh_gauges()

    async def _recover(self, job: Job) -> bool:
        """Settle an InProgress/Stopping job whose worker belonged to a previous server; True to resume it."""
        if job.worker_pid and await self._io(process.is_worker_alive, job.worker_pid, job.job_id):
            log.warning("job %s: killing orphaned worker %d", job.name, job.worker_pid)
            process.signal_group(job.worker_pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while await self._io(process.is_worker_alive, job.worker_pid, job.job_id) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        slot = _Slot(job.job_id, job.spec.model_name, attempt=job.attempt)
        await self._ingest(slot, observe=False)
        await self._io(clean_stale_staging, self.settings.model_base_path / job.spec.model_name)
        if slot.output is not None:
            await self._end(job, JobState.COMPLETED, "", slot.output)
        elif job.state == JobState.STOPPING:
            await self._end(job, JobState.STOPPED, "")
        elif job.attempt >= self.settings.max_attempts:
            reason = (
                f"the job was interrupted {job.attempt} times (its worker ended with the server); giving up after "
                f"--max-attempts={self.settings.max_attempts}"
            )
            await self._end(job, JobState.FAILED, reason)
        else:
            return True
        return False

    async def shutdown(self) -> None:
        """Stop accepting jobs; stop running workers (their jobs resume on the next start)."""
        self._closing = True
        slots = list(self._slots.values())
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
        self._changes.notify_all()

    def close(self) -> None:
        """Release the thread pools (after :meth:`shutdown` and after the RPCs have ended)."""
        self._db_pool.shutdown(wait=True)
        self._io_pool.shutdown(wait=False, cancel_futures=True)

    def _check_accepting(self) -> None:
        if self._closing:
            raise Unavailable("the trainer is shutting down")

    # ----------------------------------------------------------------- running jobs

    def _schedule(self) -> None:
        while not self._closing and self._queue and len(self._slots) < self.settings.max_concurrent_jobs:
            job_id = self._queue.popleft()
            slot = _Slot(job_id, "")
            self._slots[job_id] = slot
            slot.task = asyncio.create_task(self._run(slot), name=f"trainer-job-{job_id}")
        if self.metrics is not None:
            self.metrics.queue_length.set(len(self._queue))

    async def _run(self, slot: _Slot) -> None:
        try:
            if await self._launch(slot):
                await self._follow(slot)
        except Exception:
            log.exception("job %s: the runner failed", slot.job_id)
            slot.signal(signal.SIGKILL)
            if not self._closing:
                job = await self._db(self.store.get, slot.job_id)
                await self._end(job, JobState.FAILED, "internal error in the trainer; see the server log")
        finally:
            slot.exited.set()
            del self._slots[slot.job_id]
            if not self._closing:
                self._schedule()
                await self._refresh_gauges()

    async def _launch(self, slot: _Slot) -> bool:
        async with self._lock:
            job = await self._db(self.store.get, slot.job_id)
            if job.state not in (JobState.PENDING, JobState.IN_PROGRESS):
                return False
            resume = job.state == JobState.IN_PROGRESS
            slot.attempt, slot.model_name = job.attempt + 1, job.spec.model_name
            event = (
                _message(f"resuming from the last checkpoint (attempt {slot.attempt})")
                if resume
                else state_event(JobState.IN_PROGRESS)
            )
            job = await self._db(
                self.store.update,
                job.job_id,
                event=event,
                attempt=slot.attempt,
                state=JobState.IN_PROGRESS,
                start_time=job.start_time or time.time(),
            )
            slot.last_seq = (await self._db(self.store.events, job.job_id, 0))[-1].seq
            job_dir = self._job_dir(job.job_id)
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
                await self._end(job, JobState.FAILED, f"could not start a worker process: {exc.strerror or exc}")
                return False
            await self._db(self.store.update, job.job_id, worker_pid=slot.worker.pid)
            log.info("job %s: worker %d started (attempt %d)", job.name, slot.worker.pid, slot.attempt)
            if self._closing:
                slot.interrupted = True
                slot.signal(signal.SIGTERM)
        self._changes.notify(job.job_id)
        return True

    async def _follow(self, slot: _Slot) -> None:
        worker = slot.worker
        assert worker is not None and worker.stdout is not None
        while await worker.stdout.readline():
            await self._ingest(slot)
        returncode = await worker.wait()
        slot.exited.set()
        await self._ingest(slot)
        await self._finish(slot, returncode)

    async def _ingest(self, slot: _Slot, observe: bool = True) -> None:
        """Read the worker's new events; keep the job's last metrics and output current."""
        events = await self._db(self.store.events, slot.job_id, slot.last_seq)
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
            await self._db(self.store.update, slot.job_id, **changes)
        if events:
            self._changes.notify(slot.job_id)

    async def _finish(self, slot: _Slot, returncode: int) -> None:
        async with self._lock:
            job = await self._db(self.store.get, slot.job_id)
            log.info("job %s: worker %s", job.name, process.describe_exit(returncode))
            if slot.output is not None:
                await self._end(job, JobState.COMPLETED, "", slot.output)
            elif slot.stop_requested or job.state == JobState.STOPPING:
                await self._end(job, JobState.STOPPED, "", killed=returncode < 0)
            elif slot.interrupted:
                note = (
                    "the trainer shut down during training; the job resumes from its last checkpoint when it restarts"
                )
                await self._db(self.store.update, job.job_id, event=_message(note), worker_pid=None)
                self._changes.notify(job.job_id)
            elif returncode == 0:
                await self._end(job, JobState.FAILED, "the worker exited without publishing a model version")
            else:
                where = self._job_dir(job.job_id) / "worker.log"
                reason = slot.error or f"the training worker {process.describe_exit(returncode)}; see {where}"
                await self._end(job, JobState.FAILED, reason, killed=returncode < 0)

    async def _end(
        self, job: Job, state: JobState, reason: str, output: ModelOutput | None = None, killed: bool = False
    ) -> Job:
        """Remove the job's temporary files (its worker has exited), then record its terminal state: whoever
        sees the job ended finds no checkpoints, cache or half-written version of it left."""
        busy_models = {s.model_name for s in self._slots.values() if s.job_id != job.job_id}
        model_name = job.spec.model_name
        staging = self.settings.model_base_path / model_name if killed and model_name not in busy_models else None
        await self._io(self._remove_temporary, self._job_dir(job.job_id), staging)
        now = time.time()
        changes: dict[str, Any] = {"output": output} if output is not None else {}
        job = await self._db(
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

    @staticmethod
    def _remove_temporary(job_dir: Path, model_dir: Path | None) -> None:
        for name in ("work", "cache"):
            shutil.rmtree(job_dir / name, ignore_errors=True)
        if model_dir is not None:
            clean_stale_staging(model_dir)  # a version a killed worker was writing

    async def _kill_after(self, slot: _Slot, grace: float) -> None:
        try:
            await asyncio.wait_for(slot.exited.wait(), grace)
        except TimeoutError:
            log.warning("job %s: the worker did not stop within %.0fs; killing it", slot.job_id, grace)
            slot.signal(signal.SIGKILL)


def _encode_token(cursor: int | None) -> str:
    if cursor is None:
        return ""
    return base64.urlsafe_b64encode(json.dumps({"before": cursor}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> int | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["before"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("invalid page_token; pass the next_page_token of the previous page") from None
