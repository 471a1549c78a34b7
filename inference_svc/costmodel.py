"""A model version's cost curve, measured at warm-up: what one batch costs alone and beside another.

The batcher asks it one question (:meth:`CostCurve.run_beside`): with a batch already running and
``n`` images queued, is it faster to start them now, beside the running batch, or to wait for that
batch to end and run them — with whatever arrives meanwhile — as one larger batch? On a CPU both
batches share the same cores, so a second small batch mostly slows the first down; for a model whose
cost per call is dominated by fixed (serial) overhead, or on a GPU where the host prepares one batch
while the device runs the other, running side by side wins. The curve says which, per batch size,
for this model on this machine, instead of a fixed thread count or timeout guessing it.

Measured in the loader thread right after the warm-up inferences (so every shape is traced):
``alone[b]`` is the best of a few timed calls at padded size ``b``; ``beside[b]`` is the wall time
of two calls at size ``b`` started together on two threads. Times are made non-decreasing in ``b``
(a larger batch never costs less), which removes most of a noisy machine's inversions.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

_ALONE_REPEATS = 3
_BESIDE_REPEATS = 2
_SMOOTHING = 0.1  # weight of each served batch in the curve: about the last 10 batches of a size count


@dataclass
class CostCurve:
    """Seconds per call by padded batch size: ``alone`` (one call at a time), ``beside`` (two at once).

    :meth:`observe` folds in what serving measures (each batch's model time, and whether another batch
    ran beside it), so a curve measured while the machine was busy with something else corrects itself,
    as BentoML's dispatcher keeps regressing its recent batches. Touched on the event loop only.
    """

    sizes: tuple[int, ...]
    alone: dict[int, float]
    beside: dict[int, float]

    def padded(self, n: int) -> int:
        i = bisect.bisect_left(self.sizes, n)
        return self.sizes[min(i, len(self.sizes) - 1)]

    def rate_alone(self, n: int) -> float:
        """Images/s of batches of ``n`` run one after another (padding counted as waste)."""
        return n / self.alone[self.padded(n)]

    def rate_beside(self, n: int) -> float:
        """Images/s of two batches of ``n`` running at once."""
        return 2 * n / self.beside[self.padded(n)]

    def run_beside(self, n: int, largest: int) -> bool:
        """Start ``n`` queued images now beside a running batch, rather than wait to merge them?

        Waiting for the running batch to end lets at least as many images again arrive (a closed loop's
        clients are either queued or in flight), so the alternative is one batch of ``min(2n, largest)``.
        """
        if not self.beside:
            return False
        return self.rate_beside(n) >= self.rate_alone(min(2 * n, largest))

    def observe(self, padded: int, seconds: float, overlapped: bool) -> None:
        """One batch of ``padded`` images took ``seconds``, alone or with another batch running beside it."""
        times = self.beside if overlapped else self.alone
        if padded in times:
            times[padded] += _SMOOTHING * (seconds - times[padded])

    def best_size(self) -> int:
        return max(self.sizes, key=self.rate_alone)

    def describe(self) -> str:
        return ", ".join(
            f"{b}: {1e3 * self.alone[b]:.2f} ms"
            + (f" ({1e3 * self.beside[b]:.2f} ms for two at once)" if b in self.beside else "")
            for b in self.sizes
        )


def measure(predict: Callable[[np.ndarray], np.ndarray], batches: Mapping[int, np.ndarray], beside: bool) -> CostCurve:
    """Time ``predict`` on each of ``batches`` (padded size → images), already warmed up."""
    sizes = tuple(sorted(batches))
    alone: dict[int, float] = {}
    for size in sizes:
        best = float("inf")
        for _ in range(_ALONE_REPEATS):
            start = time.perf_counter()
            predict(batches[size])
            best = min(best, time.perf_counter() - start)
        alone[size] = best
    pair: dict[int, float] = {}
    if beside:
        with ThreadPoolExecutor(2, thread_name_prefix="tfic-costmodel") as pool:
            for size in sizes:
                best = float("inf")
                for _ in range(_BESIDE_REPEATS):
                    barrier = threading.Barrier(3)
                    futures = [pool.submit(_after, barrier, predict, batches[size]) for _ in range(2)]
                    barrier.wait()
                    start = time.perf_counter()
                    for future in futures:
                        future.result()
                    best = min(best, time.perf_counter() - start)
                pair[size] = best
    return CostCurve(sizes, _non_decreasing(sizes, alone), _non_decreasing(sizes, pair) if pair else {})


def _after(barrier: threading.Barrier, predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> None:
    barrier.wait()
    predict(images)


def _non_decreasing(sizes: tuple[int, ...], times: Mapping[int, float]) -> dict[int, float]:
    out: dict[int, float] = {}
    running = 0.0
    for size in sizes:
        running = max(running, times[size])
        out[size] = running
    return out
