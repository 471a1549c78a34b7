"""Image decoding in worker processes (``--decode-pool processes``): the pixels come back, the GIL stays the
event loop's.

In threads, decoding shares the server's one GIL. Pillow releases it for the pixel work, but holds it for its
Python-level parsing (JPEG markers, ``tobytes``): sampled under saturation, the two decode threads held the GIL
in about a third of the samples in which anyone did. A data-plane thread runs at a lower priority than the
event loop (:mod:`inference_svc.priority`), and when the scheduler preempts it *while it holds the GIL*, the
loop waits until that thread runs again: a priority inversion. Measured under saturation (200 clients, 2
cores), the loop was stalled for more than 5 ms about a tenth of the time, and in those stalls it was neither
running nor waiting for a core 72 % of the time: it was waiting for the GIL. A refusal arriving then waited
with it. Each decode process has its own interpreter, so the loop waits for nobody; the processes run at the
data plane's priority, which is now safe. They also decode on more cores than one GIL allows, which is what a
GPU node, where serving is decode-bound, needs.

The wire: one socket pair per worker. The server's end is an asyncio transport on the event loop (writes are
buffered, never block the loop); the worker's end is a plain blocking socket. Frames, little-endian:

* request: ``<QdHHHI`` (job id, deadline on ``time.monotonic()``'s clock or 0, height, width, length of the
  interpolation name, length of the image), the name, the image bytes;
* reply: ``<QBdI`` (job id, 0 pixels / 1 error / 2 expired, seconds spent decoding, payload length), then the
  uint8 [height, width, 3] pixels, or the error as JSON (its ``tfic.errors`` class, message, field, details).

Each worker has at most :data:`DEPTH` jobs in flight; the rest wait in the server, where a job whose caller has
gone (cancelled) or whose deadline has passed is dropped before any worker sees it, as the thread pool does.
A worker that dies fails its jobs in flight (INTERNAL: a decoder crash cannot say which image did it) and is
replaced. ``CLOCK_MONOTONIC`` is one clock for every process on the machine, so deadlines travel as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference_svc import priority
from inference_svc.metrics import cancel_reason
from tfic import errors
from tfic.errors import DeadlineExceeded, TficError
from tfic.imaging import DecodeLimits, decode_resize

log = logging.getLogger(__name__)

REQUEST = struct.Struct("<QdHHHI")
REPLY = struct.Struct("<QBdI")
PIXELS, ERROR, EXPIRED = 0, 1, 2  # EXPIRED: the deadline had passed when the worker came to it
# Jobs sent to one worker and not yet answered: one decoding, one waiting in its socket, so a worker never
# idles between jobs while the rest stay in the server, where they can still be dropped.
DEPTH = 2
_QUICK_DEATH_SECONDS = 1.0
_RETRY_SECONDS = 5.0
_EXPIRED = "the request's deadline passed while it waited to be decoded"


class DecodeProcessError(RuntimeError):
    """A decode process died with jobs in flight (not a TficError: the caller sees INTERNAL)."""


@dataclass
class _Job:
    id: int
    frame: tuple[bytes, ...]  # header, interpolation name, image: written as they are, never joined
    deadline: float | None
    future: asyncio.Future[None]
    out: np.ndarray  # where the pixels go, [height, width, 3] uint8


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    transport: asyncio.Transport | None = None
    in_flight: dict[int, _Job] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


class DecodeProcesses:
    """``await start()``, then ``submit`` on the event loop; ``close`` stops the workers.

    ``on_drop(reason)`` is called for a job dropped before any worker saw it (:func:`cancel_reason`'s),
    ``on_decoded(seconds)`` for each image decoded, with the worker's decode time.
    """

    def __init__(
        self,
        workers: int,
        limits: DecodeLimits,
        use_draft: bool,
        niceness: int = 0,
        idle: bool = False,
        on_drop: Callable[[str], None] | None = None,
        on_decoded: Callable[[float], None] | None = None,
    ) -> None:
        self.size = max(1, workers)
        self._limits = limits
        self._use_draft = use_draft
        self._niceness = niceness
        self._idle = idle
        self._on_drop = on_drop
        self._on_decoded = on_decoded
        self._workers: list[_Worker] = []
        self._waiting: deque[_Job] = deque()
        self._next_id = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replacing: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._workers = [await self._spawn(i) for i in range(self.size)]

    async def _spawn(self, index: int) -> _Worker:
        assert self._loop is not None
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "inference_svc.decode_worker",
            str(theirs.fileno()),
            json.dumps(
                {
                    "max_bytes": self._limits.max_bytes,
                    "max_pixels": self._limits.max_pixels,
                    "use_draft": self._use_draft,
                }
            ),
        ]
        # Its own session: a terminal's Ctrl-C reaches the server only, which then stops the workers (close()).
        process = subprocess.Popen(command, pass_fds=[theirs.fileno()], start_new_session=True)
        theirs.close()
        priority.lower_process(process.pid, self._niceness, self._idle)
        worker = _Worker(index, process)
        transport, _ = await self._loop.connect_accepted_socket(lambda: _Replies(self, worker), ours)
        worker.transport = transport
        log.debug("decode process %d started (pid %d)", index, process.pid)
        return worker

    def submit(self, data: bytes, interpolation: str, out: np.ndarray, deadline: float | None) -> asyncio.Future[None]:
        """Decode ``data`` into ``out`` ([height, width, 3] uint8), as the thread pool's ``decode_one`` does."""
        if self._closed or self._loop is None:
            raise RuntimeError("the decode processes are not running")
        self._next_id += 1
        name = interpolation.encode()
        height, width, _ = out.shape
        header = REQUEST.pack(self._next_id, deadline or 0.0, height, width, len(name), len(data))
        job = _Job(self._next_id, (header, name, data), deadline, self._loop.create_future(), out)
        self._waiting.append(job)
        self._pump()
        return job.future

    def _pump(self) -> None:
        """Send waiting jobs to the least busy workers with room, dropping those nobody waits for any more."""
        while self._waiting:
            live = [w for w in self._workers if w.transport is not None and not w.transport.is_closing()]
            worker = min(live, key=lambda w: len(w.in_flight), default=None)
            if worker is None or len(worker.in_flight) >= DEPTH:
                return
            assert worker.transport is not None  # one of the live
            job = self._waiting.popleft()
            if job.future.done():  # cancelled by its caller
                self._drop(cancel_reason(job.deadline))
                continue
            if job.deadline is not None and time.monotonic() >= job.deadline:
                self._drop("deadline")
                job.future.set_exception(DeadlineExceeded(_EXPIRED))
                continue
            worker.in_flight[job.id] = job
            worker.transport.writelines(job.frame)

    def _drop(self, reason: str) -> None:
        if self._on_drop is not None:
            self._on_drop(reason)

    def _answered(self, worker: _Worker, job_id: int, status: int, seconds: float, payload: bytes) -> None:
        job = worker.in_flight.pop(job_id, None)
        if job is not None and not job.future.done():
            try:
                if status == PIXELS:
                    job.out[...] = np.frombuffer(payload, dtype=np.uint8).reshape(job.out.shape)
                    if self._on_decoded is not None:
                        self._on_decoded(seconds)
                    job.future.set_result(None)
                elif status == EXPIRED:
                    self._drop("deadline")
                    job.future.set_exception(DeadlineExceeded(_EXPIRED))
                else:
                    job.future.set_exception(_error_from_json(payload))
            except Exception as exc:  # a reply that does not fit its job: the caller must still get an answer
                log.exception("decode process %d sent a reply that does not fit job %d", worker.process.pid, job_id)
                job.future.set_exception(
                    DecodeProcessError(f"decode process {worker.process.pid} replied badly: {exc}")
                )
        self._pump()

    def _lost(self, worker: _Worker) -> None:
        """A worker's socket closed: fail its jobs, and replace it unless the pool is closing."""
        worker.transport = None
        for job in worker.in_flight.values():
            if not job.future.done():
                job.future.set_exception(DecodeProcessError(f"decode process {worker.process.pid} exited"))
        worker.in_flight.clear()
        if self._closed:
            return
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()  # a socket closed by a live worker is as good as dead
        assert self._loop is not None
        task = self._loop.create_task(self._replace(worker))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, worker: _Worker) -> None:
        code = await asyncio.get_running_loop().run_in_executor(None, worker.process.wait)
        log.error("decode process %d (pid %d) exited with %s; starting another", worker.index, worker.process.pid, code)
        if time.monotonic() - worker.started < _QUICK_DEATH_SECONDS:
            await asyncio.sleep(_QUICK_DEATH_SECONDS)  # one that cannot start must not spin
        while not self._closed:
            try:
                fresh = await self._spawn(worker.index)
            except OSError:  # out of processes or file descriptors: try again, the slot must not stay dead
                log.exception("cannot start decode process %d; retrying in %.0f s", worker.index, _RETRY_SECONDS)
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            if self._closed:  # closed while it started: it is not in the pool, so stop it here
                self._stop([fresh])
                return
            self._workers[worker.index] = fresh
            self._pump()
            return

    def close(self) -> None:
        """Stop the workers and cancel what is still waiting.

        A transport closes its socket only on a later turn of the loop, so end of file would reach the workers
        after this returns; they are sent SIGTERM instead (a decode in progress is abandoned: nobody waits for
        it any more) and reaped here, so none outlives the pool.
        """
        if self._closed:
            return
        self._closed = True
        for job in self._waiting:
            if not job.future.done():
                job.future.cancel()
        self._waiting.clear()
        # A replacement still starting is not cancelled (it could leave its process behind): it sees the pool
        # closed and stops that process itself.
        self._stop(self._workers)

    @staticmethod
    def _stop(workers: list[_Worker]) -> None:
        for worker in workers:
            if worker.transport is not None:
                worker.transport.abort()
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        for worker in workers:  # SIGTERM ends them at once: this waits milliseconds, not seconds
            try:
                worker.process.wait(5)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


class _Replies(asyncio.Protocol):
    """The server's end of one worker's socket: reassembles reply frames."""

    def __init__(self, pool: DecodeProcesses, worker: _Worker) -> None:
        self._pool = pool
        self._worker = worker
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= REPLY.size:
            job_id, status, seconds, length = REPLY.unpack_from(buffer)
            end = REPLY.size + length
            if len(buffer) < end:
                return
            payload = bytes(buffer[REPLY.size : end])
            del buffer[:end]
            self._pool._answered(self._worker, job_id, status, seconds, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._lost(self._worker)


def _error_to_json(exc: BaseException) -> bytes:
    if isinstance(exc, TficError):
        body = {"type": type(exc).__name__, "message": exc.message, "field": exc.field, "details": exc.details}
    else:
        body = {"type": None, "message": f"{type(exc).__name__}: {exc}"}
    return json.dumps(body, default=str).encode()


def _error_from_json(payload: bytes) -> Exception:
    body: dict[str, Any] = json.loads(payload)
    cls = getattr(errors, body["type"] or "", None)
    if isinstance(cls, type) and issubclass(cls, TficError):
        try:
            return cls(body["message"], field=body.get("field"), **body.get("details", {}))
        except TypeError:  # a class with another constructor
            return TficError(body["message"], field=body.get("field"))
    return DecodeProcessError(f"a decode process failed: {body['message']}")


# ----------------------------------------------------------------------------- the worker's side
def serve(sock: socket.socket, limits: DecodeLimits, use_draft: bool) -> None:
    """Decode requests from ``sock`` until it closes (blocking; the worker process's main loop)."""
    reader = sock.makefile("rb", buffering=1 << 16)
    while True:
        header = reader.read(REQUEST.size)
        if len(header) < REQUEST.size:
            return  # the server closed the socket
        job_id, deadline, height, width, name_length, data_length = REQUEST.unpack(header)
        name = reader.read(name_length).decode()
        data = reader.read(data_length)
        if len(data) < data_length:
            return
        if deadline and time.monotonic() >= deadline:
            sock.sendall(REPLY.pack(job_id, EXPIRED, 0.0, 0))
            continue
        start = time.perf_counter()
        try:
            pixels = decode_resize(data, (height, width), name, limits, use_draft)
        except Exception as exc:  # every failure goes back to the caller, named
            if not isinstance(exc, TficError):
                traceback.print_exc()  # a bug, not a bad image: the server's log must have it
            payload = _error_to_json(exc)
            sock.sendall(REPLY.pack(job_id, ERROR, time.perf_counter() - start, len(payload)) + payload)
            continue
        raw = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        sock.sendall(REPLY.pack(job_id, PIXELS, time.perf_counter() - start, len(raw)) + raw)


def worker_main(argv: list[str]) -> int:
    fd, options = int(argv[0]), json.loads(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us (end of file, or SIGTERM at close)
    sock = socket.socket(fileno=fd)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        serve(sock, DecodeLimits(options["max_bytes"], options["max_pixels"]), options["use_draft"])
    return 0
