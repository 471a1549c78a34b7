"""Decoding and resizing in a bounded pool of threads or processes, off the event loop.

Each image goes through tfic's one preprocessing definition (:func:`tfic.imaging.decode_resize`), the
pixels the model was trained on and its exported ``serving_default`` signature computes. Pillow releases
the GIL while it decodes and resizes, so threads use every core. The definition decodes JPEGs at 1/2,
1/4 or 1/8 scale in the DCT when the model's input is that much smaller, which makes a 5-megapixel photo
4× cheaper than a full decode; ``use_draft=False`` (``--no-use-draft``) decodes at full size instead,
an opt-in that is not the model's definition (its measured skew is in docs/inference.md).

``pool="processes"`` decodes in worker processes instead (:mod:`inference_svc.decode_processes`: why, and the
wire): the same definition, the same errors, no decode work under the server's GIL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from inference_svc.decode_processes import DecodeProcesses
from inference_svc.metrics import Metrics, cancel_reason
from inference_svc.workers import WorkerPool
from tfic.errors import DeadlineExceeded, ImageTooLarge, InvalidArgument, InvalidImage, ResourceExhausted, TficError
from tfic.imaging import DEFAULT_LIMITS, DecodeLimits, decode_resize


class Preprocessor:
    def __init__(
        self,
        workers: int,
        limits: DecodeLimits = DEFAULT_LIMITS,
        use_draft: bool = True,
        max_queue: int = 1024,
        metrics: Metrics | None = None,
        pool: str = "threads",
        priority: tuple[int, bool] = (0, False),
    ) -> None:
        """``pool``: "threads" or "processes"; ``priority``: the processes' (niceness, SCHED_IDLE), as
        :func:`inference_svc.priority.data_plane` says (threads lower themselves)."""
        self.limits = limits
        self.use_draft = use_draft
        self.max_queue = max_queue
        self._metrics = metrics
        self._pool: WorkerPool | None = None
        self._processes: DecodeProcesses | None = None
        if pool == "processes":
            self._processes = DecodeProcesses(
                workers, limits, use_draft, *priority, on_drop=self._count_dropped, on_decoded=self._observe_decode
            )
        elif pool == "threads":
            self._pool = WorkerPool(workers, "tfic-decode", on_skip=self._count_cancelled)
        else:
            raise ValueError(f"unknown decode pool {pool!r}: threads or processes")
        self._queued = 0  # images submitted and not finished; touched on the event loop only

    async def start(self) -> None:
        """Start the decode processes, if any (threads start with the object)."""
        if self._processes is not None:
            await self._processes.start()

    @property
    def thread_ids(self) -> list[int]:
        return self._pool.thread_ids if self._pool is not None else []

    @property
    def process_ids(self) -> list[int]:
        return self._processes.pids if self._processes is not None else []

    def _count_dropped(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.count_dropped("decode", reason)

    def _count_cancelled(self, args: tuple[Any, ...]) -> None:
        if self._metrics is not None:
            deadline = args[-1]  # decode_one's
            self._metrics.count_dropped("decode", cancel_reason(deadline))

    def decode_one(
        self, data: bytes, size: tuple[int, int], interpolation: str, out: np.ndarray, deadline: float | None = None
    ) -> None:
        """Decode ``data`` into ``out`` ([H, W, 3], uint8 or float32); blocking, thread-safe.

        With a ``deadline`` (``time.monotonic()``) that has passed by the time a worker gets here, nothing is
        decoded: the request could not be answered in time anyway, and under overload the workers' time is
        what the requests still within their deadlines need.
        """
        if deadline is not None and time.monotonic() >= deadline:
            if self._metrics is not None:
                self._metrics.count_dropped("decode", "deadline")
            raise DeadlineExceeded("the request's deadline passed while it waited to be decoded")
        start = time.perf_counter()
        out[...] = decode_resize(data, size, interpolation, self.limits, self.use_draft)
        self._observe_decode(time.perf_counter() - start)

    async def decode(
        self, images: Sequence[bytes], size: tuple[int, int], interpolation: str, deadline: float | None = None
    ) -> np.ndarray:
        """Encoded images → uint8 [N, H, W, 3] RGB at ``size`` = (height, width): the definition's pixels,
        a quarter of float32's bytes; the runtime casts them to float32 inside the model's graph.

        Images still waiting for a worker when ``deadline`` passes, or when the caller cancels, are never
        decoded (DEADLINE_EXCEEDED; cancellation propagates).

        Errors name the image: ``image 2: image is empty (0 bytes)``. Beyond ``max_queue`` images
        waiting for a worker, the request fails at once with RESOURCE_EXHAUSTED.
        """
        n = len(images)
        if self._queued + n > self.max_queue:
            raise ResourceExhausted(f"{self._queued} images are waiting to be decoded (limit {self.max_queue}); retry")
        for i, data in enumerate(images):  # cheap checks before any thread is involved
            if not data:
                raise _named(i, n, InvalidImage("image is empty (0 bytes)"))
            if len(data) > self.limits.max_bytes:
                raise _named(
                    i, n, ImageTooLarge(f"image is {len(data)} bytes; the limit is {self.limits.max_bytes} bytes")
                )
        height, width = size
        out = np.empty((n, height, width, 3), dtype=np.uint8)
        self._queued += n
        try:
            futures = [self._submit(data, size, interpolation, out[i], deadline) for i, data in enumerate(images)]
            if n == 1:
                try:
                    await futures[0]
                except TficError as exc:
                    raise _named(0, 1, exc) from None
                return out
            # Cancelling the gather cancels the jobs: those still waiting for a worker are never decoded.
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            self._queued -= n
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                if isinstance(result, TficError):
                    raise _named(i, n, result) from None
                raise result
        return out

    def _submit(
        self, data: bytes, size: tuple[int, int], interpolation: str, out: np.ndarray, deadline: float | None
    ) -> asyncio.Future[None]:
        """One image to whichever pool there is; the future resolves once ``out`` holds its pixels."""
        if self._processes is not None:
            return self._processes.submit(data, interpolation, out, deadline)
        assert self._pool is not None
        return self._pool.submit(self.decode_one, data, size, interpolation, out, deadline)

    def _observe_decode(self, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.decode_seconds.observe(seconds)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        if self._processes is not None:
            self._processes.close()


def _named(index: int, count: int, exc: TficError) -> TficError:
    """The same error naming its image: ``images[i]`` as its field, ``image i: `` in front of its message when
    the request has several."""
    if isinstance(exc, InvalidArgument) and exc.field is None:
        exc.field = f"images[{index}]"
    if count == 1:
        return exc
    try:
        return type(exc)(
            f"image {index}: {exc.message}", field=exc.field, retry_after_seconds=exc.retry_after_seconds, **exc.details
        )
    except TypeError:  # a subclass with another constructor: keep it as it is
        return exc
