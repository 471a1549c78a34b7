"""Blocking work off the runner's event loop: the job store on one thread, filesystem/S3 checks on a small pool.

The store is used from a single thread (SQLite connections stay on it and writes are serialised);
filesystem and S3 checks may be slow (a data check lists a bucket), so they get their own threads and
never queue behind the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class Offload:
    def __init__(self, io_threads: int = 4) -> None:
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="trainer-store")
        self._io_pool = ThreadPoolExecutor(io_threads, thread_name_prefix="trainer-io")

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, partial(fn, *args, **kwargs))

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the filesystem/S3 pool."""
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, partial(fn, *args))

    def close(self) -> None:
        """Finish the store's pending writes; drop queued filesystem checks."""
        self._db_pool.shutdown(wait=True)
        self._io_pool.shutdown(wait=False, cancel_futures=True)
