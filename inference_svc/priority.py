"""The event loop before the data plane: decode, batch, load and TensorFlow threads run at a lower CPU priority.

On a saturated machine every runnable thread shares the cores, and the event loop (one thread that accepts
every call, refuses over-limit ones, answers health probes and sends every response) gets a share no larger
than one decode thread's. A refusal or a probe then waits behind image work for tens of milliseconds
(issue 15: p50 16 ms, p99 74 ms for a refusal at 200 clients on 2 cores). Giving the threads that do the
heavy work a higher nice value makes the scheduler run the loop first whenever it has something to do; the
loop needs a small share of a core, so throughput is unchanged while control-plane latency drops.

Raising a thread's nice value needs no privilege (lowering it back would), so this only ever lowers the
data plane and never touches the threads it does not own: gRPC's (``event_engine``, ``grpc_global_tim``,
the completion-queue poller) and the loop's stay at the process's priority. Linux only: there
``setpriority(PRIO_PROCESS, tid)`` applies to one thread; elsewhere it would renice the whole process, so it
is not called.

A nice value only weighs the loop's share; a woken loop can still wait for a core behind a data-plane thread's
time slice. ``idle`` also puts the data plane under Linux's ``SCHED_IDLE`` policy (again no privilege): it runs
only when no normal thread wants the core, so the loop (and gRPC's threads) preempt it at once. Measured
(bench/inference/admission.py, docs/inference.md) that shortens a refusal's p99 under saturation by about a
third at no cost in throughput. It is not the default because the policy yields to *every* normal thread that
wants the core: other programs' load on a shared host, and a flood of refusals from clients that retry without
back-off (the loop then takes the cores and the data plane admits a third of what it did).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# TensorFlow's own C++ pools (intra-op ``tf_Compute``, ``tf_graph_runner``, …), created lazily inside TF:
# their names are all that identify them.
RUNTIME_THREAD_PREFIXES = ("tf_",)

_SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "setpriority")
_IDLE_SUPPORTED = _SUPPORTED and hasattr(os, "SCHED_IDLE")
# Set once by the server at start (--data-plane-niceness, --data-plane-policy), before any data-plane thread.
_niceness = 0
_idle = False


def configure(niceness: int, idle: bool = False) -> None:
    global _niceness, _idle
    _niceness = niceness if _SUPPORTED else 0
    _idle = idle and _IDLE_SUPPORTED


def data_plane() -> tuple[int, bool]:
    """The data plane's (niceness, SCHED_IDLE) as configured: what the decode processes take."""
    return _niceness, _idle


def _active() -> bool:
    return _niceness > 0 or _idle


def _lower(tid: int, niceness: int | None = None, idle: bool | None = None) -> bool:
    """Give ``tid`` the data plane's priority (or the one given) unless it has it already; whether it moved."""
    niceness = _niceness if niceness is None else niceness
    idle = _idle if idle is None else idle and _IDLE_SUPPORTED
    moved = False
    try:
        if niceness > 0 and _SUPPORTED:
            # Relative to the process's own priority (a `nice tfic serve inference` keeps its offset).
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + niceness)
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
                moved = True
        if idle and os.sched_getscheduler(tid) != os.SCHED_IDLE:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            moved = True
    except OSError as exc:  # a thread that has just exited, or a sandbox that forbids it
        log.debug("could not lower thread %d's priority: %s", tid, exc)
    return moved


def lower_process(pid: int, niceness: int, idle: bool) -> None:
    """A single-threaded child process (a decode worker) at the given data-plane priority, set by its parent as
    soon as the process exists, before it has served anything (for a process's main thread, tid = pid)."""
    _lower(pid, niceness, idle)


def lower_current_thread() -> None:
    """Called first thing in a data-plane thread (a decode or batch worker, a model loader)."""
    if _active():
        _lower(threading.get_native_id())


def lower_runtime_threads() -> int:
    """Lower TensorFlow's own threads that exist now (after a model has loaded); the number newly lowered."""
    if not _active():
        return 0
    lowered = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # exited meanwhile
            continue
        if name.startswith(RUNTIME_THREAD_PREFIXES) and _lower(int(task.name)):
            lowered += 1
    return lowered


def thread_niceness(tid: int) -> int:
    """A thread's nice value (tests and the benchmark read it)."""
    return os.getpriority(os.PRIO_PROCESS, tid)


def thread_is_idle(tid: int) -> bool:
    """Whether a thread runs under ``SCHED_IDLE`` (tests read it)."""
    return _IDLE_SUPPORTED and os.sched_getscheduler(tid) == os.SCHED_IDLE
