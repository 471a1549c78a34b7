"""Watch streams: every event of a job from the first, then live ones, woken when the job changes.

A watcher waits on :class:`Changes` (rung when a worker's events are read or the job's state moves)
and also re-reads the store every ``_WATCH_RECHECK_SECONDS``, so a missed ring only delays it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from tfic.errors import Unavailable
from trainer_svc.service.jobs import JobEvent
from trainer_svc.service.offload import Offload
from trainer_svc.service.store import JobStore

_WATCH_RECHECK_SECONDS = 5.0  # a watcher re-reads the store this often even without a doorbell


class Changes:
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


async def watch(
    store: JobStore, offload: Offload, changes: Changes, ref: str, closing: Callable[[], bool]
) -> AsyncIterator[JobEvent]:
    """The job's events from the first; ends after its terminal state, or with UNAVAILABLE on shutdown."""
    job = await offload.db(store.get, ref)
    seen = 0
    while True:
        waiter = changes.waiter(job.job_id)
        job = await offload.db(store.get, job.job_id)
        for event in await offload.db(store.events, job.job_id, seen):
            seen = event.seq
            yield event
        if job.state.terminal:
            changes.notify(job.job_id)  # drops the waiter (and wakes any other watcher early)
            return
        if closing():
            raise Unavailable("the trainer is shutting down; watch the job again once it is back")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), _WATCH_RECHECK_SECONDS)
