"""Request coalescing: concurrent one-image requests share upstream calls, and each still gets its own answer.

Against the real gateway and inference service, a barrier in front of the app holds requests until all
have arrived, so they reach the coalescer together (no timing luck). The coalescer's edge cases
(deadline or disconnect while queued, a malformed upstream answer) are driven with a scripted upstream.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.coalesce import Coalescer
from gateway.settings import GatewaySettings
from gateway.upstream import Call, Classification, Inference, ModelInfo, ModelRef, Prediction
from tests.gateway.servers import MODEL, SECOND_MODEL, RunningGateway, RunningInference, run_gateway
from tests.gateway.test_invocations import direct, expected_bodies
from tfic.errors import DeadlineExceeded, InvalidImage, NotFound
from tfic.grpc_errors import UpstreamError

PNG = {"Content-Type": "image/png"}


class Barrier:
    """Pure ASGI middleware holding every POST until ``parties`` of them have arrived, then releasing all."""

    def __init__(self, app: ASGIApp, parties: int) -> None:
        self.app = app
        self.parties = parties
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.arrived += 1
            if self.arrived >= self.parties:
                self.all_here.set()
            await asyncio.wait_for(self.all_here.wait(), 60)
        await self.app(scope, receive, send)


def images_per_call(client: httpx.Client) -> tuple[float, float]:
    """(calls, images) from the gateway's tfic_gateway_upstream_images_per_call histogram."""
    text = client.get("/metrics").text
    count = re.search(r"^tfic_gateway_upstream_images_per_call_count ([\d.e+]+)$", text, re.M)
    total = re.search(r"^tfic_gateway_upstream_images_per_call_sum ([\d.e+]+)$", text, re.M)
    assert count is not None and total is not None, text
    return float(count.group(1)), float(total.group(1))


async def post_all(url: str, requests: Sequence[tuple[str, bytes]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(path, content=body, headers=PNG) for path, body in requests))


def coalescing_gateway(gateway: RunningGateway, parties: int) -> tuple[GatewaySettings, Starlette]:
    settings = replace(gateway.settings, coalesce_max_images=8, coalesce_max_in_flight=1)
    app = create_app(settings)
    app.add_middleware(Barrier, parties=parties)
    return settings, app


def test_concurrent_requests_share_calls_and_each_gets_its_own_answer(
    gateway: RunningGateway, inference: RunningInference, images: dict[str, bytes]
) -> None:
    cases = [
        ("/invocations", "png", MODEL, 0),
        ("/invocations?top_k=2", "jpeg", MODEL, 2),
        (f"/models/{SECOND_MODEL}/invocations", "other_png", SECOND_MODEL, 0),
        ("/models/tiny/versions/1/invocations", "other_png", MODEL, 0),
    ] * 6
    settings, app = coalescing_gateway(gateway, len(cases))
    with run_gateway(settings, app) as gw, gw.client() as client:
        responses = asyncio.run(post_all(gw.url, [(path, images[name]) for path, name, _, _ in cases]))
        calls, sent = images_per_call(client)
    for response, (_, name, model, top_k) in zip(responses, cases, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["x-tfic-model"] == model
        assert (
            response.content
            == expected_bodies(direct(inference, images[name], top_k, model).results[0])["application/json"]
        )
    assert sent == len(cases)  # every image went upstream exactly once …
    assert calls < len(cases)  # … in fewer calls than requests


def test_a_corrupt_image_in_a_coalesced_call_fails_alone(
    gateway: RunningGateway, inference: RunningInference, images: dict[str, bytes]
) -> None:
    with gateway.client() as plain:  # the answer without coalescing, for comparison
        alone = plain.post("/invocations", content=images["truncated_png"], headers=PNG)
    assert alone.status_code == 400
    bodies = [images["png"]] * 4 + [images["truncated_png"]] + [images["other_png"]] * 4
    settings, app = coalescing_gateway(gateway, len(bodies))
    with run_gateway(settings, app) as gw:
        responses = asyncio.run(post_all(gw.url, [("/invocations", body) for body in bodies]))
    assert [r.status_code for r in responses] == [200] * 4 + [400] + [200] * 4
    assert responses[4].json()["error"] == alone.json()["error"]
    for response, body in zip(responses, bodies, strict=True):
        if body is not images["truncated_png"]:
            assert response.content == expected_bodies(direct(inference, body).results[0])["application/json"]


def test_coalescing_off_sends_every_request_alone(gateway: RunningGateway, images: dict[str, bytes]) -> None:
    settings = replace(gateway.settings, coalesce_max_images=1)
    app = create_app(settings)
    app.add_middleware(Barrier, parties=8)
    with run_gateway(settings, app) as gw, gw.client() as client:
        responses = asyncio.run(post_all(gw.url, [("/invocations", images["png"])] * 8))
        text = client.get("/metrics").text
    assert [r.status_code for r in responses] == [200] * 8
    assert "tfic_gateway_upstream_images_per_call_count 0.0" in text


# --- the coalescer alone, over a scripted upstream ---------------------------------------------------------


class Scripted(Inference):
    """An upstream whose calls are recorded and answered when the test opens ``gate``."""

    def __init__(self, results_per_call: int | None = None) -> None:
        self.calls: list[list[bytes]] = []
        self.gate = asyncio.Event()
        self.results_per_call = results_per_call

    async def classify(self, model: ModelRef, images: Sequence[bytes], top_k: int, call: Call) -> Prediction:
        self.calls.append(list(images))
        await self.gate.wait()
        n = len(images) if self.results_per_call is None else self.results_per_call
        if model.name == "missing":
            raise NotFound("no model 'missing'")
        if b"bad" in images:
            raise InvalidImage(f"image {images.index(b'bad')}: data is corrupt or truncated")
        results = [Classification([float(len(images[i % len(images)]))], ["x"], [0], "x", 0) for i in range(n)]
        return Prediction(model.name, 1, results)

    async def list_models(self, call: Call) -> list[ModelInfo]:
        return []

    async def get_model(self, name: str, call: Call) -> ModelInfo:
        return ModelInfo(name, ())

    async def ready(self, timeout: float) -> bool:
        return True

    async def close(self) -> None:
        return None


def call_with(seconds: float, request_id: str = "r") -> Call:
    return Call(request_id=request_id, deadline=time.monotonic() + seconds)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Let the other tasks run until ``condition`` holds, checked after every turn of the event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0)  # one turn of the loop, not a timed wait


def arrived(coalescer: Coalescer, upstream: Scripted, n: int) -> Callable[[], bool]:
    """Whether ``n`` requests have reached the coalescer: each image is either sent upstream or queued."""

    def check() -> bool:
        return sum(map(len, upstream.calls)) + coalescer.queued() == n

    return check


async def test_queued_requests_go_together_when_the_call_slot_frees() -> None:
    upstream = Scripted()
    coalescer = Coalescer(upstream, max_images=8, max_in_flight=1)
    model = ModelRef("m")
    tasks = [asyncio.create_task(coalescer.classify(model, b"x" * (i + 1), 0, call_with(30))) for i in range(4)]
    await until(arrived(coalescer, upstream, 4), "all four requests are sent or queued")
    assert upstream.calls == [[b"x"]]  # the first went alone; three wait for the slot
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == [[b"x"], [b"xx", b"xxx", b"xxxx"]]
    assert [r.results[0].probabilities[0] for r in results] == [1.0, 2.0, 3.0, 4.0]  # each its own result


async def test_a_full_batch_goes_out_without_waiting_for_a_slot() -> None:
    upstream = Scripted()
    coalescer = Coalescer(upstream, max_images=2, max_in_flight=1)
    tasks = [asyncio.create_task(coalescer.classify(ModelRef("m"), b"i%d" % i, 0, call_with(30))) for i in range(5)]
    await until(arrived(coalescer, upstream, 5), "all five requests are sent or queued")
    assert upstream.calls == [[b"i0"], [b"i1", b"i2"], [b"i3", b"i4"]]
    upstream.gate.set()
    await asyncio.gather(*tasks)


async def test_a_request_whose_deadline_passes_in_the_queue_is_504_and_never_sent() -> None:
    upstream = Scripted()
    coalescer = Coalescer(upstream, max_images=8, max_in_flight=1)
    first = asyncio.create_task(coalescer.classify(ModelRef("m"), b"a", 0, call_with(30)))
    await until(lambda: upstream.calls == [[b"a"]], "the first request holds the call slot")
    with pytest.raises(DeadlineExceeded, match="deadline passed while it waited"):
        await coalescer.classify(ModelRef("m"), b"late", 0, call_with(0.05))
    cancelled = asyncio.create_task(coalescer.classify(ModelRef("m"), b"gone", 0, call_with(30)))
    kept = asyncio.create_task(coalescer.classify(ModelRef("m"), b"kept", 0, call_with(30)))
    await until(arrived(coalescer, upstream, 3), "both wait in the queue behind the first")
    cancelled.cancel()  # the client went away while queued
    upstream.gate.set()
    await first
    await kept
    assert upstream.calls == [[b"a"], [b"kept"]]


async def test_an_invalid_image_in_a_coalesced_call_is_found_by_resending_each_alone() -> None:
    upstream = Scripted()
    coalescer = Coalescer(upstream, max_images=8, max_in_flight=1)
    bodies = [b"first", b"ok1", b"bad", b"ok22"]
    tasks = [asyncio.create_task(coalescer.classify(ModelRef("m"), body, 0, call_with(30))) for body in bodies]
    await until(arrived(coalescer, upstream, 4), "all four requests are sent or queued")
    upstream.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert upstream.calls == [[b"first"], [b"ok1", b"bad", b"ok22"], [b"ok1"], [b"bad"], [b"ok22"]]
    assert isinstance(outcomes[2], InvalidImage) and str(outcomes[2]).startswith("image 0:")  # as if sent alone
    answered = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(isinstance(o, Prediction) for o in answered), answered
    assert [o.results[0].probabilities[0] for o in answered if isinstance(o, Prediction)] == [5.0, 3.0, 4.0]


async def test_errors_for_the_whole_call_reach_every_request() -> None:
    upstream = Scripted()
    coalescer = Coalescer(upstream, max_images=8, max_in_flight=1)
    tasks = [asyncio.create_task(coalescer.classify(ModelRef("missing"), b"x", 0, call_with(30))) for _ in range(3)]
    await until(arrived(coalescer, upstream, 3), "all three requests are sent or queued")
    upstream.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, NotFound) for o in outcomes)
    assert len(upstream.calls) == 2  # not retried image by image: the error is not about an image


async def test_an_answer_with_the_wrong_number_of_results_is_an_upstream_error() -> None:
    upstream = Scripted(results_per_call=1)
    coalescer = Coalescer(upstream, max_images=8, max_in_flight=1)
    tasks = [asyncio.create_task(coalescer.classify(ModelRef("m"), b"x", 0, call_with(30))) for _ in range(3)]
    await until(arrived(coalescer, upstream, 3), "all three requests are sent or queued")
    upstream.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert not isinstance(outcomes[0], Exception)  # the lone first call had one image, one result
    assert all(isinstance(o, UpstreamError) and "2 images with 1 results" in str(o) for o in outcomes[1:])
