"""A small fixed pool of worker threads whose results come back to the event loop.

``loop.run_in_executor`` with a ``ThreadPoolExecutor`` costs a semaphore round trip, a
``concurrent.futures.Future`` and a second future chained onto it for every job; on the hot path
(one decode and one batch per request) that showed up as a large share of the event loop's CPU.
Here a job is one ``SimpleQueue.put`` and its result one ``call_soon_threadsafe``.

Rules: ``submit`` is called on the event loop; ``fn`` runs in a worker thread and must be
thread-safe; the returned future resolves on the loop. A job whose future is cancelled before a
worker takes it is skipped (``on_skip`` is called with its arguments); one that has started runs to the end and its
result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from inference_svc import priority

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class WorkerPool:
    def __init__(self, workers: int, name: str, on_skip: Callable[[tuple[Any, ...]], None] | None = None) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(max(1, workers))
        ]
        self._closed = False
        self._on_skip = on_skip
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    @property
    def thread_ids(self) -> list[int]:
        """The workers' kernel thread ids (``Thread.start`` returns once a thread has one)."""
        return [t.native_id for t in self._threads if t.native_id is not None]

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("worker pool is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, loop, future))
        return future

    def shutdown(self) -> None:
        """Stop the threads after the jobs already queued (does not wait)."""
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _work(self) -> None:
        priority.lower_current_thread()  # decode and batch work yields the CPU to the event loop
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, args, loop, future = job
            if future.cancelled():  # racy read, but the worst case is doing work nobody waits for
                if self._on_skip is not None:
                    self._on_skip(args)
                del job, fn, args, future
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                _post(loop, _fail, future, exc)
            else:
                _post(loop, _succeed, future, result)
            del job, fn, args, future


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
