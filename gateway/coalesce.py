"""Request coalescing: concurrent one-image classifications of the same model share one upstream call.

Every ``Classify`` RPC costs CPU on both sides (~0.3 ms in a ``grpc.aio`` client and ~0.5 ms in the
inference service on a 2-core machine, docs/gateway.md) whatever it carries, and the inference
service batches images anyway. So under load the gateway sends images of the same model and
``top_k`` together, Nagle-style and without a timer:

* while fewer than ``max_in_flight`` calls for that model are outstanding, a request goes out at once,
  alone (at low concurrency nothing changes: no waiting, no extra work);
* otherwise it waits in the model's queue; when an outstanding call returns, everything queued (up to
  ``max_images`` images and :data:`MAX_BATCH_BYTES` bytes) goes out as one call, and a full batch goes
  out at once even with no call slot free, so the gateway never caps throughput.

Each request keeps its own semantics: it waits no longer than its own deadline (504), a client that
goes away leaves the batch, and if a coalesced call is refused as invalid (one corrupt image fails
the whole RPC) its images are re-sent one by one, so only the bad one fails. Every other error
(model not found, queue full, service unavailable) is the same for every image and is given to all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.upstream import Call, Inference, ModelRef, Prediction
from tfic.errors import DeadlineExceeded, InvalidArgument
from tfic.grpc_errors import UpstreamError

# Larger images gain nothing from sharing a call (their decode dwarfs the RPC) and must not push a
# coalesced message past the inference service's message-size limit.
MAX_BATCH_BYTES = 1024 * 1024
MAX_REQUEST_IDS = 16  # request ids joined into the x-request-id of a coalesced call


@dataclass(eq=False)
class _Waiting:
    image: bytes
    call: Call
    future: asyncio.Future[Prediction]


@dataclass(eq=False)
class _Lane:
    """The queue and the outstanding calls of one (model, top_k)."""

    queue: deque[_Waiting] = field(default_factory=deque)
    in_flight: int = 0


class Coalescer:
    def __init__(
        self,
        upstream: Inference,
        *,
        max_images: int,
        max_in_flight: int,
        observe: Callable[[int], None] = lambda images: None,
    ) -> None:
        if max_images < 2 or max_in_flight < 1:
            raise ValueError("coalescing needs max_images >= 2 and max_in_flight >= 1")
        self._upstream = upstream
        self._max_images = max_images
        self._max_in_flight = max_in_flight
        self._observe = observe  # images per upstream call
        self._lanes: dict[tuple[ModelRef, int], _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def queued(self) -> int:
        """Requests waiting for a call slot (those whose deadline passed or whose client left excluded)."""
        return sum(not w.future.done() for lane in self._lanes.values() for w in lane.queue)

    async def classify(self, model: ModelRef, image: bytes, top_k: int, call: Call) -> Prediction:
        key = (model, top_k)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if lane.in_flight < self._max_in_flight and not lane.queue:
            lane.in_flight += 1
            try:
                self._observe(1)
                return await self._upstream.classify(model, (image,), top_k, call)
            finally:
                lane.in_flight -= 1
                self._drain(key, lane)
        waiting = _Waiting(image, call, asyncio.get_running_loop().create_future())
        lane.queue.append(waiting)
        if len(lane.queue) >= self._max_images:
            self._drain(key, lane)
        try:
            return await asyncio.wait_for(waiting.future, call.remaining())
        except TimeoutError:
            raise DeadlineExceeded("the request's deadline passed while it waited for the inference service") from None

    def _drain(self, key: tuple[ModelRef, int], lane: _Lane) -> None:
        """Send what is queued while a call slot is free, and full batches regardless."""
        while lane.queue and (lane.in_flight < self._max_in_flight or len(lane.queue) >= self._max_images):
            batch: list[_Waiting] = []
            size = 0
            while lane.queue and len(batch) < self._max_images:
                waiting = lane.queue[0]
                if waiting.future.done():  # deadline passed or client gone while queued
                    lane.queue.popleft()
                    continue
                if batch and size + len(waiting.image) > MAX_BATCH_BYTES:
                    break
                lane.queue.popleft()
                batch.append(waiting)
                size += len(waiting.image)
            if not batch:
                continue
            lane.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(key, lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not lane.queue and lane.in_flight == 0:
            self._lanes.pop(key, None)  # lanes of models no longer called do not pile up

    async def _send(self, key: tuple[ModelRef, int], lane: _Lane, batch: Sequence[_Waiting]) -> None:
        model, top_k = key
        try:
            await self._call(model, top_k, batch)
        finally:
            lane.in_flight -= 1
            self._drain(key, lane)

    async def _call(self, model: ModelRef, top_k: int, batch: Sequence[_Waiting]) -> None:
        self._observe(len(batch))
        ids = ",".join(w.call.request_id for w in batch[:MAX_REQUEST_IDS])
        call = Call(request_id=ids, deadline=max(w.call.deadline for w in batch))
        try:
            prediction = await self._upstream.classify(model, [w.image for w in batch], top_k, call)
        except InvalidArgument as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
            else:  # one bad image fails the whole call: find it by sending each alone
                await asyncio.gather(*(self._call(model, top_k, (w,)) for w in batch if not w.future.done()))
        except Exception as exc:  # the same answer for every image: model unknown, queue full, unavailable …
            for waiting in batch:
                _fail(waiting, exc)
        else:
            if len(prediction.results) != len(batch):
                error = UpstreamError(
                    f"the inference service answered {len(batch)} images with {len(prediction.results)} results"
                )
                for waiting in batch:
                    _fail(waiting, error)
                return
            for waiting, result in zip(batch, prediction.results, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(Prediction(prediction.model_name, prediction.model_version, [result]))

    async def close(self) -> None:
        """Wait for the calls already sent (the app's lifespan closes the channel only after this)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(waiting: _Waiting, exc: BaseException) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(exc)
