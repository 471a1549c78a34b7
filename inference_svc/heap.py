"""Keeping Python's cyclic garbage collector from stalling the event loop.

A process that has imported TensorFlow and loaded a model holds millions of long-lived Python objects, and each
full (generation 2) collection walks all of them: measured under load on this machine, 200–690 ms, during
which the event loop answers nothing, admitted or refused. The collections come every few tens of seconds at
a few hundred requests per second, so they set the p99 of every call. :func:`freeze` collects once and moves
every object alive at that moment into the permanent generation (:func:`gc.freeze`), which collections skip;
what requests allocate afterwards is still collected as usual.

It runs when the set of loaded versions has settled (at start-up and after each load or unload): unfreezing
first lets the objects of an unloaded version be collected, and the one full collection then happens at a
version change, not in the middle of traffic.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze() -> None:
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.info("froze %d long-lived objects out of garbage collection in %.0f ms", gc.get_freeze_count(),
             1e3 * (time.perf_counter() - start))  # fmt: skip
