"""Waiting for the other workers of a multi-worker run, in Python, before TensorFlow's own rendezvous.

``tf.distribute.MultiWorkerMirroredStrategy()`` blocks in C++ until every worker in ``TF_CONFIG`` has joined,
holding the GIL, so nothing in Python runs while it waits: no log line, no timeout, and no signal handler (it
also installs its own SIGTERM handler, which only records the signal). A worker whose peers never came hung
there forever and ignored SIGTERM. So before the strategy is built, :func:`wait_for_workers`:

* opens this worker's own port (its address in ``TF_CONFIG``) with a plain listening socket, so the other
  workers, waiting in the same way, can see it before TensorFlow listens there;
* tries a TCP connection to every other worker's address until all of them accept one, printing
  ``waiting for workers …`` (the addresses missing, this task, the cluster) at once and then every
  ``--worker-wait-log-seconds``;
* gives up after ``--worker-startup-timeout-seconds`` with :class:`~tfic.errors.DeadlineExceeded` (``tfic
  train`` exits 1), and stops at once on SIGTERM or SIGINT with :class:`StartupInterrupted` (``tfic train``
  exits 128 + the signal's number, 143 for SIGTERM, as a process killed by it would, without a traceback).

Then it closes its socket and the strategy is built with SIGTERM at the system's default (terminate), since a
Python handler could not run while the constructor holds the GIL; afterwards the SIGTERM handler the process had
before is put back (TensorFlow's would otherwise swallow the signal for the whole run). The workers' C++
rendezvous then only waits for peers that were all reachable a moment ago.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar

from tfic.errors import Cancelled, DeadlineExceeded, FailedPrecondition, InvalidArgument
from tfic.settings import check, setting

log = logging.getLogger(__name__)

# Task types that take part in the collectives (an evaluator or a parameter server does not).
_COLLECTIVE_TYPES = ("chief", "worker")
_PROBE_INTERVAL_SECONDS = 0.5
STARTUP = "multi-worker startup (TF_CONFIG; docs/deploy.md, Distributed training)"


@dataclass(frozen=True)
class WorkerStartup:
    """How a multi-worker ``tfic train`` waits for its peers (``TF_CONFIG``) before training."""

    ENV_PREFIX: ClassVar[str] = "TFIC_TRAIN_"

    worker_startup_timeout_seconds: float = setting(
        600.0,
        "multi-worker training: give up (exit 1) when the other workers in TF_CONFIG are not all listening "
        "after this long",
        above=0,
        group=STARTUP,
    )
    worker_wait_log_seconds: float = setting(
        10.0,
        "multi-worker training: repeat the 'waiting for workers' line this often while waiting",
        above=0,
        group=STARTUP,
    )

    def __post_init__(self) -> None:
        check(self)


class StartupInterrupted(Cancelled):
    """A signal (SIGTERM, SIGINT) arrived while this worker waited for its peers."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in ``TF_CONFIG``: its task, its own address and the collective workers' addresses."""

    task_type: str
    index: int
    address: str
    cluster: tuple[str, ...]  # every collective task's address, chief first

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(a for a in self.cluster if a != self.address)

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.index}"

    @classmethod
    def from_tf_config(cls, config: dict[str, Any]) -> ClusterTask:
        cluster = config.get("cluster") or {}
        task = config.get("task") or {}
        task_type = str(task.get("type", ""))
        try:
            index = int(task.get("index", 0))
            own = cluster[task_type][index]
        except (KeyError, IndexError, TypeError, ValueError):
            raise InvalidArgument(
                f"TF_CONFIG's task {task!r} is not one of its cluster's tasks {sorted(cluster)}"
            ) from None
        addresses = tuple(str(a) for kind in _COLLECTIVE_TYPES for a in cluster.get(kind, ()))
        return cls(task_type, index, str(own), addresses)


def tf_config() -> dict[str, Any]:
    try:
        data = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        raise InvalidArgument("TF_CONFIG is not valid JSON") from None
    return data if isinstance(data, dict) else {}


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise InvalidArgument(f"TF_CONFIG address {address!r} is not HOST:PORT") from None


def reachable(address: str, timeout: float) -> bool:
    """Whether something accepts a TCP connection at ``address`` (a name that does not resolve yet: no)."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # refused, unreachable, timed out, or not in DNS yet (a pod still starting)
        return False


@contextlib.contextmanager
def _listening(address: str) -> Iterator[Callable[[], None]]:
    """This worker's port, open until TensorFlow takes it; yields a function that closes accepted probes."""
    _, port = split_address(address)
    try:
        if socket.has_dualstack_ipv6():  # as TensorFlow's server listens: on every address, IPv4 and IPv6
            server = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        else:
            server = socket.create_server(("", port))
    except OSError as exc:
        raise FailedPrecondition(
            f"cannot listen on port {port}, this worker's address {address} in TF_CONFIG: {exc}"
        ) from None
    server.setblocking(False)

    def drain() -> None:
        # Probes connect and hang up; accepting them keeps the backlog from filling over a long wait.
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # BlockingIOError: none waiting
                return
            connection.close()

    try:
        yield drain
    finally:
        drain()
        server.close()


def wait_for_workers(task: ClusterTask, startup: WorkerStartup, say: Callable[[str], None] | None = None) -> None:
    """Return once every peer of ``task`` accepts a connection (see the module's docstring)."""
    if not task.peers:
        return
    say = say or _stderr
    deadline = time.monotonic() + startup.worker_startup_timeout_seconds
    next_line = 0.0
    with _interrupting(task), _listening(task.address) as drain:
        while True:
            drain()
            missing = [p for p in task.peers if not reachable(p, timeout=1.0)]
            now = time.monotonic()
            if not missing:
                say(f"all {len(task.cluster)} workers are listening; joining them ({task.name} at {task.address})")
                return
            if now >= deadline:
                raise DeadlineExceeded(
                    f"gave up waiting for workers after {startup.worker_startup_timeout_seconds:g} s: "
                    f"{', '.join(missing)} not listening ({task.name} at {task.address} of the cluster "
                    f"{', '.join(task.cluster)} in TF_CONFIG; --worker-startup-timeout-seconds)"
                )
            if now >= next_line:
                say(
                    f"waiting for workers {', '.join(missing)} ({len(task.cluster) - len(missing)} of "
                    f"{len(task.cluster)} listening; this is {task.name} at {task.address} of the cluster "
                    f"{', '.join(task.cluster)}; giving up in {deadline - now:.0f} s)"
                )
                next_line = now + startup.worker_wait_log_seconds
            time.sleep(min(_PROBE_INTERVAL_SECONDS, max(0.0, deadline - now)))  # the probe rate, not a sync


@contextlib.contextmanager
def _interrupting(task: ClusterTask) -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`StartupInterrupted` while waiting; the old handlers come back after."""

    def stop(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        raise StartupInterrupted(f"stopped by {name} while waiting for workers ({task.name})", signum=signum)

    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def terminable() -> Iterator[None]:
    """Around the strategy's constructor: SIGTERM terminates (no Python handler can run while it holds the GIL),
    and the handler the process had before is back afterwards, replacing the one TensorFlow installs."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stderr(line: str) -> None:
    # On stderr whatever the log level (`tfic train` logs only warnings by default), as the services print
    # their listening line: whoever watches a worker's log must see why it is not training yet.
    print(line, file=sys.stderr, flush=True)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # only there can signal handlers be set
