"""Dynamic batching for one model version.

Requests (``submit``) join a queue on the event loop. A batch is started when a batch thread is
free and one of these holds:

* the queued images fill ``max_batch_size``;
* no more requests are on their way — none *announced* (being decoded for this version, see
  :meth:`Batcher.announce`) — so a lone request runs at once and latency at concurrency 1 is the
  model's latency, not the timeout, and a free thread never idles next to queued work that
  nothing will add to;
* this batch would not take the last free thread: requests on their way can run on another one
  when they arrive, so waiting for them would only delay this one (at low concurrency the
  batcher then does what batching off does: small batches side by side);
* the oldest queued request has waited ``batch_timeout``.

So the timeout only applies while more requests are being decoded and only one thread is left,
which is exactly when waiting a little buys a fuller batch; while every thread is busy the queue
fills by itself.

With a cost curve (:mod:`inference_svc.costmodel`, measured at warm-up; ``adaptive`` batching, the
default) one more rule comes first: while a batch runs, the queue starts another batch beside it
only if the curve says two batches of that size at once serve more images per second than waiting
for the running batch to end and running the queue, grown meanwhile, as one larger batch
(:meth:`~inference_svc.costmodel.CostCurve.run_beside`). The running batch's end dispatches again,
so nothing waits longer than one batch. With nothing running a request still starts at once.

Up to ``num_batch_threads`` batches run at once, in a thread pool of that size (never on the event
loop). Each batch is padded (with zeros) up to the next of ``allowed_batch_sizes`` so the runtime
sees few shapes. Batch buffers are reused, one per padded size and running batch.

Requests larger than ``max_batch_size`` are split into chunks that batch independently. The
queue is bounded: if the images waiting would fill more than ``max_enqueued_batches`` batches the
request fails at once with :class:`~tfic.errors.ResourceExhausted`. A request whose deadline has
passed, or whose caller has gone away, is dropped before its batch runs.

With batching disabled every request runs as its own batch, unpadded, under the same thread and
queue limits.

All state is touched on the event loop only; the worker threads run ``_run_batch`` and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from inference_svc.costmodel import CostCurve
from inference_svc.metrics import Metrics, cancel_reason
from inference_svc.settings import BatchingSettings
from inference_svc.workers import WorkerPool
from tfic.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

_PROBE_EVERY = 16  # at most one batch in this many starts beside a running one against the curve


@dataclass(eq=False)
class _Task:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued: float
    deadline: float | None


@dataclass(eq=False)
class _Run:
    """A running batch; ``overlapped`` once another batch ran beside it (its time is a "beside" time)."""

    overlapped: bool


@dataclass
class BatchStats:
    """Counters for tests and status pages (the metrics carry the same information)."""

    batches: int = 0
    images: int = 0
    padded: int = 0
    expired: int = 0
    rejected: int = 0
    held: int = 0  # times the cost curve kept a queued batch from starting beside a running one
    probes: int = 0  # batches started beside one anyway, to keep the curve's "beside" times current
    sizes: list[int] = field(default_factory=list)  # runtime batch sizes, most recent last (bounded)


class Batcher:
    def __init__(
        self,
        model: str,
        predict: Callable[[np.ndarray], np.ndarray],
        settings: BatchingSettings,
        image_shape: tuple[int, int, int],
        metrics: Metrics | None = None,
        cost: CostCurve | None = None,
    ) -> None:
        self.model = model
        self.cost = cost if settings.enabled else None
        self.settings = settings
        self.stats = BatchStats()
        self._predict = predict
        self._shape = (image_shape[0], image_shape[1], 3)
        self._metrics = metrics
        self._sizes = settings.batch_sizes
        self._max = settings.max_batch_size if settings.enabled else 0
        self._timeout = settings.batch_timeout_micros / 1e6
        self._threads = settings.num_batch_threads
        self._pool = WorkerPool(self._threads, f"tfic-batch-{model}")
        # Batch buffers by padded size, reused: each thread takes one from its list and gives it back.
        self._buffers: dict[tuple[int, type[np.generic]], list[np.ndarray]] = {}
        self._buffers_lock = threading.Lock()
        self._pending: deque[_Task] = deque()
        self._pending_images = 0
        self._running = 0
        self._runs: set[_Run] = set()
        self._since_probe = 0  # batches started since the last probe (see _dispatch)
        self._incoming = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        if metrics is not None:
            self._depth = metrics.queue_depth.labels(model)
            self._wait = metrics.queue_wait.labels(model)
            self._model_seconds = metrics.model_seconds.labels(model)
            self._batch_size = metrics.batch_size.labels(model)
            self._padding = metrics.batch_padding.labels(model)

    # ----------------------------------------------------------------- public API (event loop)
    @property
    def queued(self) -> int:
        """Requests (or chunks of large requests) waiting for a batch."""
        return len(self._pending)

    @property
    def running(self) -> int:
        return self._running

    def announce(self) -> None:
        """A request for this version is being preprocessed: queued requests may wait for it.

        Follow with ``submit(..., announced=True)`` or, if preprocessing fails, ``withdraw()``.
        """
        self._incoming += 1

    def withdraw(self) -> None:
        """An announced request will not come after all."""
        self._incoming -= 1
        self._dispatch()

    async def submit(self, images: np.ndarray, deadline: float | None = None, announced: bool = False) -> np.ndarray:
        """Run ``images`` (uint8 or float32 [N, H, W, 3]) in a batch; returns their probabilities [N, C].

        ``deadline`` is a ``time.monotonic()`` value.
        """
        if announced:
            self._incoming -= 1
        if self._closed:
            # The next version is already serving (or about to): a retry soon is likely to succeed.
            raise Unavailable(
                f"model {self.model}: this version is unloading; retry", model=self.model, retry_after_seconds=1.0
            )
        if images.ndim != 4 or images.shape[1:] != self._shape:
            raise InvalidArgument(
                f"images must have shape [N, {', '.join(map(str, self._shape))}], got {list(images.shape)}"
            )
        n = len(images)
        if n == 0:
            raise InvalidArgument("no images to classify")
        chunks = [images[i : i + self._max] for i in range(0, n, self._max)] if self._max else [images]
        self._check_capacity(chunks)
        now = time.monotonic()
        futures = []
        for chunk in chunks:
            task = _Task(chunk, self._loop.create_future(), now, deadline)
            self._pending.append(task)
            self._pending_images += len(chunk)
            futures.append(task.future)
        if self._metrics is not None:
            self._depth.inc(len(chunks))
        self._dispatch()
        if len(futures) == 1:
            return await futures[0]
        return np.concatenate(await asyncio.gather(*futures))

    async def close(self) -> None:
        """Refuse new work, fail what is queued, wait for running batches, stop the threads."""
        self._closed = True
        while self._pending:
            task = self._pending.popleft()
            self._pending_images -= len(task.images)
            self._untrack_pending(1)
            if not task.future.done():
                task.future.set_exception(
                    Unavailable(
                        f"model {self.model}: this version was unloaded; retry",
                        model=self.model,
                        retry_after_seconds=1.0,
                    )
                )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._idle.wait()
        self._pool.shutdown()

    # ----------------------------------------------------------------- scheduling (event loop)
    def _check_capacity(self, chunks: list[np.ndarray]) -> None:
        limit = self.settings.max_enqueued_batches
        if self._max:
            images = self._pending_images + sum(len(c) for c in chunks)
            batches = math.ceil(images / self._max)
        else:
            batches = len(self._pending) + len(chunks)
        # A request that a free thread would take at once never counts as queued.
        free = self._threads - self._running
        if batches > limit + free:
            self.stats.rejected += 1
            raise ResourceExhausted(
                f"model {self.model}: the batch queue is full ({len(self._pending)} requests waiting, "
                f"limit {limit} batches); retry later",
                retry_after_seconds=1.0,
                model=self.model,
            )

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and self._running < self._threads:
            now = time.monotonic()
            self._drop_dead(now)
            if not self._pending:
                break
            beside = self._running > 0 and self.cost is not None
            if beside and self.cost and not self.cost.run_beside(min(self._pending_images, self._max), self._max):
                if self._since_probe < _PROBE_EVERY:
                    self.stats.held += 1
                    break  # the running batch's end calls _dispatch again, with a larger queue
                # Now and then run beside anyway: a held batch never measures "beside", so without these
                # probes a pessimistic warm-up figure (a busy machine at load time) would never be corrected.
                self.stats.probes += 1
                self._since_probe = 0
            # Wait for requests still being decoded only when this batch would take the last free
            # thread: with another thread free, they can run there when they arrive.
            last_thread = self._running + 1 >= self._threads
            if self._max and last_thread and self._incoming > 0 and self._pending_images < self._max:
                due = self._pending[0].enqueued + self._timeout
                if now < due:
                    self._timer = self._loop.call_later(due - now, self._dispatch)
                    break
            self._start(now)
        if self._running == 0 and not self._pending:
            self._idle.set()  # also when the queue emptied by dropping expired requests: close() waits for this

    def _drop_dead(self, now: float) -> None:
        """Drop queued requests whose caller is gone or whose deadline has passed (oldest first)."""
        kept: deque[_Task] = deque()
        dropped = 0
        for task in self._pending:
            if task.future.done():  # the caller's task was cancelled: it went away, or its deadline expired
                dropped += 1
                self._count_dropped(cancel_reason(task.deadline, now))
            elif task.deadline is not None and task.deadline <= now:
                task.future.set_exception(
                    DeadlineExceeded(f"model {self.model}: the deadline passed while the request was queued")
                )
                self.stats.expired += 1
                dropped += 1
                self._count_dropped("deadline")
            else:
                kept.append(task)
                continue
            self._pending_images -= len(task.images)
        if dropped:
            self._pending = kept
            self._untrack_pending(dropped)

    def _start(self, now: float) -> None:
        tasks: list[_Task] = []
        size = 0
        while self._pending:
            task = self._pending[0]
            n = len(task.images)
            if tasks and (not self._max or size + n > self._max):
                break
            self._pending.popleft()
            tasks.append(task)
            size += n
        self._pending_images -= size
        self._untrack_pending(len(tasks))
        if self._metrics is not None:
            for task in tasks:
                self._wait.observe(now - task.enqueued)
        self._running += 1
        self._since_probe += 1
        self._idle.clear()
        run = _Run(overlapped=self._running > 1)
        for other in self._runs:
            other.overlapped = True
        self._runs.add(run)
        future = self._pool.submit(self._run_batch, [t.images for t in tasks], size)
        future.add_done_callback(partial(self._finish, tasks, run))

    def _finish(self, tasks: list[_Task], run: _Run, future: asyncio.Future[tuple[np.ndarray, int, float]]) -> None:
        self._running -= 1
        self._runs.discard(run)
        try:
            probabilities, padded, seconds = future.result()
        except BaseException as exc:
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(exc)
        else:
            size = len(probabilities)
            self.stats.batches += 1
            self.stats.images += size
            self.stats.padded += padded
            self.stats.sizes.append(size + padded)
            del self.stats.sizes[:-1000]
            if self.cost is not None:
                self.cost.observe(size + padded, seconds, run.overlapped)
            if self._metrics is not None:
                self._model_seconds.observe(seconds)
                self._batch_size.observe(size)
                self._padding.observe(padded)
            offset = 0
            for task in tasks:
                n = len(task.images)
                if not task.future.done():
                    task.future.set_result(probabilities[offset : offset + n])
                offset += n
        if self._running == 0 and not self._pending:
            self._idle.set()
        self._dispatch()

    def _count_dropped(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.count_dropped("batch", reason)

    def _untrack_pending(self, count: int) -> None:
        if self._metrics is not None and count:
            self._depth.dec(count)

    # ----------------------------------------------------------------- worker threads
    def _run_batch(self, chunks: list[np.ndarray], size: int) -> tuple[np.ndarray, int, float]:
        target = next((s for s in self._sizes if s >= size), size) if self._max else size
        if len(chunks) == 1 and target == size:
            start = time.perf_counter()
            probabilities = self._predict(chunks[0])
            return probabilities, 0, time.perf_counter() - start
        # uint8 (decoded images) stays uint8 — the runtime casts in its graph —, unless float32 pixels
        # (TensorFlow Serving's Predict) share the batch.
        dtype = np.uint8 if all(c.dtype == np.uint8 for c in chunks) else np.float32
        batch = self._take_buffer(target, dtype)
        try:
            np.concatenate(chunks, out=batch[:size])
            batch[size:] = 0  # padding rows: zeros, as before reuse (rows never influence each other)
            start = time.perf_counter()
            probabilities = self._predict(batch)
            seconds = time.perf_counter() - start
        finally:
            self._give_buffer(batch)  # predict has returned: the runtime is done with it
        return probabilities[:size], target - size, seconds

    def _take_buffer(self, size: int, dtype: type[np.generic]) -> np.ndarray:
        with self._buffers_lock:
            free = self._buffers.get((size, dtype))
            if free:
                return free.pop()
        return np.empty((size, *self._shape), dtype=dtype)

    def _give_buffer(self, buffer: np.ndarray) -> None:
        with self._buffers_lock:
            self._buffers.setdefault((len(buffer), buffer.dtype.type), []).append(buffer)
