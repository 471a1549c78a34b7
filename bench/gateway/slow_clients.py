"""Normal requests through the gateway while 2,000 slow clients hold connections (slowloris), measured.

Starts the inference service and the gateway (``python -m``, their own processes, serving the small
exported CNN of :mod:`bench.gateway.run`), then:

1. **baseline**: a closed loop of ``--concurrency`` keep-alive clients sending ``POST /invocations``;
2. **attack**: the same loop while another process keeps ``--slow`` connections open, half trickling
   their headers, half their body (``Content-Length`` 100 000), one byte every ``--interval`` seconds, from
   ``--addresses`` loopback addresses (127.0.x.y: many clients, not one; the per-client cap is off by
   default). A connection the gateway closes is opened again after ``--reconnect-after`` seconds, so the
   attack never lets up.

Reports the normal requests' throughput, p50/p99 latency and failures in both phases, and what happened to
the slow connections: how many were opened, closed by the gateway and how (408, 503, closed without a
word), how long they were held, and the gateway's open file descriptors. Writes JSON::

    python -m bench.gateway.slow_clients                        # ~1 minute on 2 cores
    python -m bench.gateway.slow_clients --gateway-flags "--max-connections 100000 --header-timeout-seconds 1000"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.gateway.loadgen import HttpConnection, Result, run_closed_loop
from bench.gateway.run import MODEL, PYTHON, ROOT, _export, _process, _wait_serving

HEAD_ONLY = b"POST /invocations HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\n"
BODY_HEAD = HEAD_ONLY + b"Content-Length: 100000\r\n\r\n"


@contextmanager
def servers(base: Path, gateway_flags: Sequence[str]) -> Iterator[tuple[int, int]]:
    """The inference service and the gateway; yields (gateway port, gateway pid)."""
    inference = [PYTHON, "-m", "inference_svc", "--log-level", "info", "--model-base-path", str(base)]
    inference += ["--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1", "--drain-seconds", "0"]
    with _process(inference, r"listening on [\d.]+:(\d+)") as (_, found):
        target = f"127.0.0.1:{found.group(1)}"
        _wait_serving(target, MODEL)
        gateway = [PYTHON, "-m", "gateway", "--log-level", "warning", "--host", "127.0.0.1", "--port", "0"]
        gateway += ["--inference", target, "--default-model", MODEL, *gateway_flags]
        with _process(gateway, r"listening on http://[\d.]+:(\d+)") as (process, gw):
            yield int(gw.group(1)), process.pid


# --- the attack, in its own process so its CPU does not slow the measuring client's event loop ----------


def _attack(
    port: int, slow: int, addresses: int, interval: float, reconnect_after: float, seconds: float, out: Any
) -> None:
    out.put(asyncio.run(_attack_async(port, slow, addresses, interval, reconnect_after, seconds)))


async def _attack_async(
    port: int, slow: int, addresses: int, interval: float, reconnect_after: float, seconds: float
) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    opened = 0
    open_now = 0
    peak = 0
    endings: Counter[str] = Counter()
    held: list[float] = []

    async def one(i: int) -> None:
        nonlocal opened, open_now, peak
        source = f"127.0.{1 + i % addresses // 250}.{1 + i % addresses % 250}"
        trickled_body = i % 2 == 1
        head, tail = (BODY_HEAD, b"x" * 100_000) if trickled_body else (HEAD_ONLY, b"X-Slow: " + b"a" * 10_000)
        await asyncio.sleep(i * 0.002)  # ramp up over a few seconds, as a real attacker would
        while time.monotonic() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            except OSError:
                endings["connect_failed"] += 1
                await asyncio.sleep(reconnect_after)
                continue
            opened += 1
            open_now += 1
            peak = max(peak, open_now)
            start = time.monotonic()
            answer = b""
            try:
                writer.write(head)
                for byte in tail:
                    try:
                        answer = await asyncio.wait_for(reader.read(64), interval)
                    except TimeoutError:
                        if time.monotonic() >= stop:
                            break
                        writer.write(bytes([byte]))
                        continue
                    break
            except OSError:
                answer = b""
            open_now -= 1
            writer.close()
            if time.monotonic() >= stop:
                endings["still_open_at_end"] += 1
                return
            held.append(time.monotonic() - start)
            endings[f"answered {answer[9:12].decode()}" if answer.startswith(b"HTTP/1.1 ") else "closed silently"] += 1
            await asyncio.sleep(reconnect_after)

    await asyncio.gather(*(one(i) for i in range(slow)))
    ordered = sorted(held)
    return {
        "connections_opened": opened,
        "peak_open_from_the_attackers_side": peak,
        "endings": dict(endings),
        "held_seconds": {
            "median": round(statistics.median(ordered), 2) if ordered else None,
            "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 2) if ordered else None,
            "max": round(ordered[-1], 2) if ordered else None,
        },
    }


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _summary(result: Result) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "errors": result.errors,
        "throughput": round(result.throughput, 1),
        "p50_ms": round(result.p50, 2),
        "p99_ms": round(result.percentile(99), 2),
        "max_ms": round(max(result.latencies_ms), 2) if result.latencies_ms else None,
    }


async def _normal_load(port: int, image: bytes, concurrency: int, seconds: float) -> Result:
    headers = {"Content-Type": "image/jpeg", "Accept": "application/json"}
    conns = [HttpConnection("127.0.0.1", port, "/invocations", image, headers) for _ in range(concurrency)]
    try:
        return await run_closed_loop("normal", [c.send for c in conns], seconds, 1.0)
    finally:
        for conn in conns:
            await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.slow_clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=2000, help="slow connections the attacker keeps open")
    parser.add_argument("--addresses", type=int, default=500, help="loopback source addresses they come from")
    parser.add_argument("--interval", type=float, default=0.8, help="seconds between the slow clients' bytes")
    parser.add_argument("--reconnect-after", type=float, default=1.0, help="seconds before a closed one reconnects")
    parser.add_argument("--concurrency", type=int, default=4, help="normal closed-loop clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--gateway-flags", default="", help="extra flags for python -m gateway")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "gateway" / "results" / "slow_clients.json")
    args = parser.parse_args(argv)
    from bench.inference.fixtures import photo

    image = photo(1, 64, 48)
    with tempfile.TemporaryDirectory(prefix="tfic-gw-slow-") as tmp:
        base = Path(tmp)
        _export(base, 32)
        with servers(base, args.gateway_flags.split()) as (port, pid):
            baseline = asyncio.run(_normal_load(port, image, args.concurrency, args.seconds))
            fds_before = _fds(pid)
            queue: Any = multiprocessing.get_context("spawn").Queue()
            ramp = args.slow * 0.002 + 2 * args.interval
            attack_seconds = ramp + 1.0 + args.seconds + 1.0
            attacker = multiprocessing.get_context("spawn").Process(
                target=_attack,
                args=(port, args.slow, args.addresses, args.interval, args.reconnect_after, attack_seconds, queue),
            )
            attacker.start()
            time.sleep(ramp)  # every slow client is connected and trickling before measuring
            fds_under_attack = _fds(pid)
            attacked = asyncio.run(_normal_load(port, image, args.concurrency, args.seconds))
            fds_after_load = _fds(pid)
            slow_stats = queue.get(timeout=attack_seconds + 120)
            attacker.join(30)
    result = {
        "command": "python -m bench.gateway.slow_clients " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)),
        "slow_clients": args.slow,
        "source_addresses": args.addresses,
        "interval_seconds": args.interval,
        "gateway_flags": args.gateway_flags,
        "normal_concurrency": args.concurrency,
        "baseline": _summary(baseline),
        "under_attack": _summary(attacked),
        "gateway_fds": {"idle": fds_before, "under_attack": fds_under_attack, "end_of_load": fds_after_load},
        "slow_connections": slow_stats,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
