"""Recovery after a restart: settle each job a previous server left InProgress or Stopping.

On start, every InProgress job without a live worker resumes from its last checkpoint (attempt + 1)
ahead of the Pending ones, unless it already published its version (Completed), was being stopped
(Stopped) or used ``max_attempts`` (Failed, with the reason). A worker of the previous server still
alive (an orphan) is killed first, so two workers never train one job.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from tfic.modeldir import clean_stale_staging
from trainer_svc.service import process
from trainer_svc.service.jobs import Job, JobState
from trainer_svc.service.offload import Offload
from trainer_svc.service.supervisor import Supervisor, WorkerSlot

log = logging.getLogger(__name__)

_ORPHAN_KILL_SECONDS = 10.0


async def settle(job: Job, supervisor: Supervisor, offload: Offload) -> bool:
    """Settle an InProgress/Stopping job whose worker belonged to a previous server; True to resume it."""
    settings = supervisor.settings
    if job.worker_pid and await offload.io(process.is_worker_alive, job.worker_pid, job.job_id):
        log.warning("job %s: killing orphaned worker %d", job.name, job.worker_pid)
        process.signal_group(job.worker_pid, signal.SIGKILL)
        deadline = time.monotonic() + _ORPHAN_KILL_SECONDS
        while await offload.io(process.is_worker_alive, job.worker_pid, job.job_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    slot = WorkerSlot(job.job_id, job.spec.model_name, attempt=job.attempt)
    await supervisor.ingest(slot, observe=False)
    await offload.io(clean_stale_staging, settings.model_base_path / job.spec.model_name)
    if slot.output is not None:
        await supervisor.end(job, JobState.COMPLETED, "", slot.output)
    elif job.state == JobState.STOPPING:
        await supervisor.end(job, JobState.STOPPED, "")
    elif job.attempt >= settings.max_attempts:
        reason = (
            f"the job was interrupted {job.attempt} times (its worker ended with the server); giving up after "
            f"--max-attempts={settings.max_attempts}"
        )
        await supervisor.end(job, JobState.FAILED, reason)
    else:
        return True
    return False
