"""How soon the gateway serves again after the inference service comes back from an outage, measured.

Starts the inference service (``python -m inference_svc``, small exported CNN) on a fixed port and the
gateway in front of it, then for each outage length: stops the inference service (SIGTERM), keeps
sending ``POST /invocations`` to the gateway every 50 ms while it is down (503s), starts it again on the
same port, and from the moment its health check says SERVING (probed every 10 ms on a fresh connection
each time, so the probe has no backoff of its own) sends requests every 10 ms until one is answered 200.
The recovery time is that first 200 minus the SERVING moment. Writes JSON::

    python -m bench.gateway.recovery                          # outages of 12 s and 70 s, ~2.5 minutes
    python -m bench.gateway.recovery --outages 12 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.gateway.run import MODEL, PYTHON, ROOT, _export, _process, _wait_serving


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _inference(base: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    command = [PYTHON, "-m", "inference_svc", "--log-level", "info", "--model-base-path", str(base)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1", "--drain-seconds", "0"]
    command += ["--shutdown-grace-seconds", "0"]
    with _process(command, r"listening on [\d.]+:(\d+)") as (process, _):
        yield process


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=MODEL), timeout=0.5
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _invoke(url: str, image: bytes) -> int:
    request = urllib.request.Request(url, data=image, headers={"Content-Type": "image/jpeg"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _one_outage(base: Path, port: int, url: str, image: bytes, outage: float) -> dict[str, Any]:
    """The inference service is running on entry; stop it for ``outage`` s and time the gateway's return."""
    down_at = time.monotonic()
    statuses: set[int] = set()
    while time.monotonic() - down_at < outage:
        statuses.add(_invoke(url, image))
        time.sleep(0.05)
    with _inference(base, port) as process:
        while not _serving(f"127.0.0.1:{port}"):
            time.sleep(0.01)
        serving_at = time.monotonic()
        tries = 0
        while _invoke(url, image) != 200:
            tries += 1
            time.sleep(0.01)
        recovered = time.monotonic() - serving_at
        process.terminate()  # the next outage starts now
        process.wait(30)
    return {"outage_seconds": outage, "recovery_seconds": round(recovered, 3), "statuses_during": sorted(statuses)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.recovery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outages", default="12,70", help="comma-separated outage lengths in seconds")
    parser.add_argument("--rounds", type=int, default=1, help="outages of each length")
    parser.add_argument("--gateway-flags", default="", help="extra flags for python -m gateway")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "gateway" / "results" / "recovery.json")
    args = parser.parse_args(argv)
    from bench.inference.fixtures import photo

    image = photo(1, 64, 48)
    outages = [float(o) for o in args.outages.split(",")] * args.rounds
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfic-gw-recovery-") as tmp:
        base = Path(tmp)
        _export(base, 32)
        port = _free_port()
        target = f"127.0.0.1:{port}"
        gateway = [PYTHON, "-m", "gateway", "--log-level", "warning", "--host", "127.0.0.1", "--port", "0"]
        gateway += ["--inference", target, "--default-model", MODEL, *args.gateway_flags.split()]
        with _inference(base, port) as first:
            _wait_serving(target, MODEL)
            with _process(gateway, r"listening on http://[\d.]+:(\d+)") as (_, gw):
                url = f"http://127.0.0.1:{gw.group(1)}/invocations"
                assert _invoke(url, image) == 200
                first.terminate()
                first.wait(30)
                for outage in outages:
                    rows.append(_one_outage(base, port, url, image, outage))
                    print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": "python -m bench.gateway.recovery " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)),
        "gateway_flags": args.gateway_flags,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
