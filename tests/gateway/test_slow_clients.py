"""Slow and hostile clients against the real gateway over TCP: trickled headers and bodies, silent
connections, the connection caps, and normal requests served while slow clients are shed.

The gateway's upstream is a refused port (nothing here needs a model), so the gateway starts in
milliseconds; deadlines are a second or two so the suite stays fast. The attackers connect from 127.0.0.2
(any 127/8 address is loopback on Linux) so the per-client cap can tell them from the normal client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.servers import RunningGateway, refusing_port, run_gateway

ATTACKER = "127.0.0.2"
TRICKLE = 0.8  # seconds between bytes, as in the hostile-input run that found the hole
HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 2.0
KEEP_ALIVE = 1


@pytest.fixture(scope="module")
def guarded(refused_port_module: int) -> Iterator[RunningGateway]:
    settings = GatewaySettings(
        inference=f"127.0.0.1:{refused_port_module}",
        header_timeout_seconds=HEADER_TIMEOUT,
        body_timeout_seconds=BODY_TIMEOUT,
        keep_alive_timeout_seconds=KEEP_ALIVE,
    )
    with run_gateway(settings) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def refused_port_module() -> Iterator[int]:
    with refusing_port() as port:
        yield port


def port_of(gateway: RunningGateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


@dataclass
class Outcome:
    response: bytes  # everything the server sent before closing
    closed_after: float  # seconds from connecting to the server's close

    @property
    def status(self) -> int | None:
        if not self.response.startswith(b"HTTP/1.1 "):
            return None
        return int(self.response.split(b" ", 2)[1])

    @property
    def error(self) -> dict[str, Any]:
        body = self.response.split(b"\r\n\r\n", 1)[1]
        error: dict[str, Any] = json.loads(body)["error"]
        return error

    @property
    def headers(self) -> str:
        return self.response.split(b"\r\n\r\n", 1)[0].decode().lower()


async def trickle(
    port: int, head: bytes, tail: bytes = b"", *, source: str = "127.0.0.1", give_up: float = 8.0
) -> Outcome:
    """Send ``head`` at once, then ``tail`` one byte every TRICKLE seconds (then silence), reading whatever the
    server answers until it closes the connection; fail if it has not closed after ``give_up`` seconds."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    received = bytearray()

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)

    reading = asyncio.create_task(read_all())
    try:
        writer.write(head)
        for byte in tail:
            done, _ = await asyncio.wait({reading}, timeout=TRICKLE)
            if done:
                break
            writer.write(bytes([byte]))
        await asyncio.wait_for(reading, give_up - (time.monotonic() - start))
    except (TimeoutError, ConnectionError) as exc:
        if not isinstance(exc, ConnectionError):
            raise AssertionError(f"the gateway still holds the connection after {give_up} s") from None
    finally:
        writer.close()
        reading.cancel()
    return Outcome(bytes(received), time.monotonic() - start)


async def test_trickled_headers_get_408_at_the_header_deadline(guarded: RunningGateway) -> None:
    outcome = await trickle(port_of(guarded), b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 100)
    assert outcome.status == 408, outcome.response
    assert HEADER_TIMEOUT - 0.1 <= outcome.closed_after < HEADER_TIMEOUT + 1.5
    assert outcome.error["status"] == "REQUEST_TIMEOUT"
    assert outcome.error["reason"] == "request_timeout"
    assert "headers" in outcome.error["message"]
    assert "connection: close" in outcome.headers


async def test_a_silent_connection_is_closed_at_the_header_deadline(guarded: RunningGateway) -> None:
    outcome = await trickle(port_of(guarded), b"")
    assert outcome.response == b""  # nothing was asked, nothing is answered
    assert HEADER_TIMEOUT - 0.1 <= outcome.closed_after < HEADER_TIMEOUT + 1.5


HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n"


async def test_a_trickled_body_gets_408_at_the_body_deadline(guarded: RunningGateway) -> None:
    outcome = await trickle(port_of(guarded), HEAD + b"\r\n", b"x" * 100)
    assert outcome.status == 408, outcome.response
    assert BODY_TIMEOUT - 0.1 <= outcome.closed_after < BODY_TIMEOUT + 1.5
    assert outcome.error["status"] == "REQUEST_TIMEOUT"
    assert "--body-timeout-seconds" in outcome.error["message"]
    assert "connection: close" in outcome.headers


async def test_the_request_timeout_header_caps_reading_the_body(guarded: RunningGateway) -> None:
    outcome = await trickle(port_of(guarded), HEAD + b"X-Request-Timeout: 0.8\r\n\r\n", b"x" * 100)
    assert outcome.status == 408, outcome.response
    assert 0.7 <= outcome.closed_after < 0.8 + 1.5
    assert "request's deadline" in outcome.error["message"]


async def test_a_keep_alive_connection_trickling_its_next_request_is_closed(guarded: RunningGateway) -> None:
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    outcome = await trickle(port_of(guarded), first, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"a" * 100)
    assert outcome.status == 200  # the first answer, then the deadline on the second request's headers
    assert b"HTTP/1.1 408" in outcome.response
    # Trickling bytes keeps uvicorn's keep-alive timer from firing; the header deadline still does, at
    # keep-alive + header timeout after the first response.
    assert KEEP_ALIVE + HEADER_TIMEOUT - 0.1 <= outcome.closed_after < KEEP_ALIVE + HEADER_TIMEOUT + 1.5


@pytest.fixture
async def capped(refused_port: int) -> AsyncIterator[RunningGateway]:
    settings = GatewaySettings(
        inference=f"127.0.0.1:{refused_port}",
        header_timeout_seconds=30,
        body_timeout_seconds=30,
        max_connections=8,
        max_connections_per_client=6,
    )
    with run_gateway(settings) as gateway:
        yield gateway


async def open_silent(port: int, n: int, source: str = ATTACKER) -> list[tuple[asyncio.StreamReader, Any]]:
    conns = []
    for _ in range(n):
        conns.append(await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)))
        await asyncio.sleep(0.01)  # one after the other, so the oldest is the first
    return conns


async def test_at_the_cap_the_longest_waiting_connection_is_shed(capped: RunningGateway) -> None:
    port = port_of(capped)
    attackers = await open_silent(port, 6)  # the per-client cap
    mid_request = await open_silent(port, 2, source="127.0.0.3")  # the cap: 8 open
    for _, writer in mid_request:
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a request begun, never finished
    await asyncio.sleep(0.6)  # they have waited long enough to be shed (SHED_MIN_WAIT)
    clients = [httpx.AsyncClient(base_url=capped.url) for _ in range(3)]
    for client in clients:  # each new connection (kept open) sheds the oldest waiting one
        assert (await client.get("/healthz")).status_code == 200
    # The three oldest (attackers, silent: closed without an answer) are gone, the others still open.
    for reader, _ in attackers[:3]:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    for reader, _ in attackers[3:]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
    for reader, _ in mid_request:  # a begun request is answered when shed; these were younger
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
    for _, writer in attackers + mid_request:
        writer.close()
    for client in clients:
        await client.aclose()


async def test_a_client_over_its_connection_cap_is_refused_with_429(capped: RunningGateway) -> None:
    port = port_of(capped)
    held = await open_silent(port, 6)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 429 "), answer
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert (error["status"], error["reason"]) == ("RESOURCE_EXHAUSTED", "too_many_connections")
    assert b"retry-after: " in answer.lower()
    async with httpx.AsyncClient(base_url=capped.url) as client:  # other addresses are served
        assert (await client.get("/healthz")).status_code == 200
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_normal_requests_flow_while_slow_clients_are_shed(capped: RunningGateway) -> None:
    """Slowloris clients from three addresses keep reconnecting (two per address: under the per-client cap,
    so only the total cap and the deadlines stand in their way); every normal request is answered."""
    port = port_of(capped)
    stop = asyncio.Event()
    shed = 0

    async def slowloris(source: str) -> None:
        nonlocal shed
        while not stop.is_set():
            try:
                outcome = await trickle(port, HEAD + b"\r\n", b"x" * 1000, source=source, give_up=30)
            except AssertionError:
                return
            shed += outcome.status != 200
            await asyncio.sleep(0.1)  # and again

    attackers = [asyncio.create_task(slowloris(f"127.0.0.{i}")) for i in (2, 3, 4) for _ in range(2)]
    attackers += [asyncio.create_task(slowloris(f"127.0.1.{i}")) for i in range(8)]  # 14 > the cap of 8
    await asyncio.sleep(0.5)
    latencies = []
    async with httpx.AsyncClient(base_url=capped.url) as client:
        for _ in range(20):
            start = time.monotonic()
            response = await client.get("/healthz")
            latencies.append(time.monotonic() - start)
            assert response.status_code == 200
            await asyncio.sleep(0.05)
    stop.set()
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    assert shed >= 6  # slow clients were closed to make room
    assert max(latencies) < 1.0


async def test_a_flood_of_new_connections_at_the_cap_is_refused_with_503(capped: RunningGateway) -> None:
    """None of the open connections has waited long enough to be a slow client: the newcomer is refused."""
    port = port_of(capped)
    held = [await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.2.{i}", 0)) for i in range(1, 9)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.3.1", 0))
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert (error["status"], error["reason"]) == ("UNAVAILABLE", "connection_limit")
    for r, _ in held:  # none of them was shed
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.read(1), 0.1)
    for _, w in [*held, (reader, writer)]:
        w.close()
