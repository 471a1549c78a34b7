"""Closed-loop load generators with the same shape for both paths: N workers, each sending its next request
as soon as the previous answer arrives, for a fixed time.

* :func:`grpc_senders`: ``tfic.v1.Classifier/Classify`` over one shared ``grpc.aio`` channel.
* :class:`HttpConnection`: ``POST /invocations`` over keep-alive HTTP/1.1 connections (one per worker),
  written directly on asyncio streams so the client costs about what the gRPC client costs; a general
  HTTP client library would charge its own overhead to the gateway's numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from grpc import aio

from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

Send = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Result:
    label: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: tuple[float, ...] = ()  # what ``probe`` measured over the counted window, per process

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def run_closed_loop(
    label: str,
    senders: list[Send],
    seconds: float,
    warmup_seconds: float,
    probe: Callable[[], tuple[float, ...]] | None = None,
) -> Result:
    """Each sender is one worker's connection; latencies are recorded after the warm-up.

    ``probe`` (e.g. CPU seconds of some processes) is read when counting starts and when it stops;
    the result carries the difference.
    """
    latencies: list[float] = []
    errors = 0
    counting = False
    stop = False

    async def worker(send: Send) -> None:
        nonlocal errors
        while not stop:
            start = time.perf_counter()
            try:
                await send()
            except Exception:
                if counting:
                    errors += 1
                continue
            if counting:
                latencies.append((time.perf_counter() - start) * 1000)

    tasks = [asyncio.create_task(worker(s)) for s in senders]
    await asyncio.sleep(warmup_seconds)
    counting = True
    before = probe() if probe is not None else ()
    begin = time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    elapsed = time.perf_counter() - begin
    after = probe() if probe is not None else ()
    stop = True
    await asyncio.gather(*tasks)
    cpu = tuple(b - a for a, b in zip(before, after, strict=True))
    return Result(label, len(senders), len(latencies), errors, elapsed, latencies, cpu)


def grpc_senders(
    channel: aio.Channel, model: str, image: bytes, concurrency: int, omit_labels: bool = False
) -> list[Send]:
    """Every class's probability per answer (``top_k`` 0); with ``omit_labels`` without the label strings, as a
    client that takes them once per version from ``GetModel`` asks (the gateway does)."""
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    request = classifier_pb2.ClassifyRequest(
        model=common_pb2.ModelSpec(name=model), images=[image], omit_labels=omit_labels
    )

    async def send() -> None:
        await stub.Classify(request, timeout=30)

    return [send] * concurrency


class HttpConnection:
    """One keep-alive HTTP/1.1 connection sending the same POST; reads Content-Length-framed responses."""

    def __init__(self, host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> None:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(self.request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            await self.close()  # e.g. the server closed an idle keep-alive connection: reconnect next time
            raise
        status = int(head[9:12])
        if status != 200:
            raise RuntimeError(f"HTTP {status}")

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
