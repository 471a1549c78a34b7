"""The job runner: accepts jobs into a FIFO queue and hands them to worker slots; the servicer's one entry.

Transport-free (no gRPC): the servicer calls :meth:`JobRunner.create`, ``get``, ``list_jobs``, ``stop``
and ``watch``. Runs on one asyncio event loop; blocking store and filesystem/S3 work goes through
:mod:`~trainer_svc.service.offload`, so the loop never blocks on them. The rest lives by job:

* :mod:`~trainer_svc.service.supervisor`: worker processes, their events, stop (SIGTERM → SIGKILL);
* :mod:`~trainer_svc.service.recovery`: what a previous server left running, settled on start;
* :mod:`~trainer_svc.service.watchers`: watch streams;
* :mod:`~trainer_svc.service.paging`: ``ListTrainingJobs`` pages.

At most ``max_concurrent_jobs`` workers run at once; other jobs wait Pending, oldest first (resumed
jobs ahead of them). Shutdown stops running workers but their jobs stay InProgress, checkpoints kept,
and resume on the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator

from tfic.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from trainer_svc.service import paging, recovery
from trainer_svc.service.jobs import Job, JobEvent, JobSpec, JobState
from trainer_svc.service.metrics import TrainerMetrics
from trainer_svc.service.offload import Offload
from trainer_svc.service.settings import TrainerSettings
from trainer_svc.service.store import JobStore, state_event
from trainer_svc.service.supervisor import Supervisor
from trainer_svc.service.validation import check_spec, validate_job_name
from trainer_svc.service.watchers import Changes, watch

log = logging.getLogger(__name__)


def new_job_id() -> str:
    # The underscore keeps ids apart from job names, which cannot contain one.
    return f"tj_{uuid.uuid4().hex}"


class JobRunner:
    def __init__(self, store: JobStore, settings: TrainerSettings, metrics: TrainerMetrics | None = None) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._policy = settings.policy()
        self._offload = Offload()
        self._queue: deque[str] = deque()
        self._lock = asyncio.Lock()  # serialises state transitions
        self._changes = Changes()
        self._workers = Supervisor(store, settings, self._offload, self._changes, self._lock, metrics)

    @property
    def _closing(self) -> bool:
        return self._workers.closing

    async def _refresh_gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.set_job_counts(await self._offload.db(self.store.count_by_state))
            self.metrics.queue_length.set(len(self._queue))

    # ----------------------------------------------------------------- API

    async def create(self, name: str, spec: JobSpec, request_id: str | None = None) -> Job:
        """Accept a job (Pending) after checking everything about it; idempotent on ``request_id``."""
        db = self._offload.db
        self._check_accepting()
        if request_id:
            earlier = await db(self.store.find_request, request_id)
            if earlier is not None:
                return self._same_request(earlier, name, request_id)
        validate_job_name(name)
        if await self._find(name) is not None:  # before the data checks, which may be slow (S3)
            raise AlreadyExists(f"a training job named {name!r} already exists", name=name)
        checked = await self._offload.io(check_spec, name, spec, self._policy)
        job = Job(new_job_id(), name, JobState.PENDING, checked, time.time(), request_id=request_id or None)
        async with self._lock:
            self._check_accepting()
            job, created = await db(self.store.create, job)
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
        return await self._offload.db(self.store.get, ref)

    async def _find(self, ref: str) -> Job | None:
        try:
            return await self._offload.db(self.store.get, ref)
        except NotFound:
            return None

    async def list_jobs(
        self, states: list[JobState], page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Job], str]:
        limit = paging.page_limit(page_size)
        jobs, cursor = await self._offload.db(self.store.list_jobs, states, limit, paging.decode_token(page_token))
        return jobs, paging.encode_token(cursor)

    async def stop(self, ref: str) -> Job:
        """Pending → Stopped at once; InProgress → Stopping (SIGTERM now, SIGKILL after the grace period)."""
        db = self._offload.db
        async with self._lock:
            job = await db(self.store.get, ref)
            if job.state in (JobState.STOPPING, JobState.STOPPED):
                return job
            if job.state.terminal:
                raise FailedPrecondition(
                    f"job {job.name!r} already ended ({job.state.value}); there is nothing to stop"
                )
            slot = self._workers.slots.get(job.job_id)
            if slot is None or slot.worker is None:  # queued (Pending, or InProgress waiting to resume)
                if job.job_id in self._queue:
                    self._queue.remove(job.job_id)
                job = await self._workers.end(job, JobState.STOPPED, "")
            else:
                job = await db(
                    self.store.update, job.job_id, event=state_event(JobState.STOPPING), state=JobState.STOPPING
                )
                self._workers.request_stop(slot)
            await self._refresh_gauges()
        self._changes.notify(job.job_id)
        log.info("job %s: stop requested (%s)", job.name, job.state.value)
        return job

    def watch(self, ref: str) -> AsyncIterator[JobEvent]:
        """Every event of the job from the first, then live ones; ends after its terminal state."""
        return watch(self.store, self._offload, self._changes, ref, lambda: self._closing)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Recover what a previous server left (see :mod:`~trainer_svc.service.recovery`), then start the queue."""
        resumed: list[str] = []
        pending: list[str] = []
        for job in await self._offload.db(self.store.active):
            if job.state == JobState.PENDING:
                pending.append(job.job_id)
            elif await recovery.settle(job, self._workers, self._offload):
                resumed.append(job.job_id)
        self._queue.extend([*resumed, *pending])
        if resumed or pending:
            log.info("recovered %d interrupted and %d pending jobs", len(resumed), len(pending))
        self._schedule()
        await self._refresh_gauges()

    async def shutdown(self) -> None:
        """Stop accepting jobs; stop running workers (their jobs resume on the next start)."""
        await self._workers.stop_all()
        self._changes.notify_all()

    def close(self) -> None:
        """Release the thread pools (after :meth:`shutdown` and after the RPCs have ended)."""
        self._offload.close()

    def _check_accepting(self) -> None:
        if self._closing:
            raise Unavailable("the trainer is shutting down")

    # ----------------------------------------------------------------- queue

    def _schedule(self) -> None:
        while not self._closing and self._queue and len(self._workers.slots) < self.settings.max_concurrent_jobs:
            self._workers.start(self._queue.popleft(), on_exit=self._slot_freed)
        if self.metrics is not None:
            self.metrics.queue_length.set(len(self._queue))

    async def _slot_freed(self) -> None:
        self._schedule()
        await self._refresh_gauges()
