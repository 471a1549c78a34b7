"""The gateway as deployed, configured by environment variables alone: ``tfic serve gateway`` with no flags."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.gateway.servers import MODEL, RunningInference

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"tfic gateway listening on http://127\.0\.0\.1:(\d+) \(inference service (\S+)\)")


@dataclass
class Process:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    port: int | None = None
    target: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.port, self.target = int(found.group(1)), found.group(2)
                self.ready.set()
        self.ready.set()  # the process ended: stop waiting


@pytest.fixture
def from_environment(inference: RunningInference) -> Iterator[Process]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TFIC_")}
    environ.update(
        TFIC_GATEWAY_HOST="127.0.0.1",
        TFIC_GATEWAY_PORT="0",
        TFIC_GATEWAY_INFERENCE=inference.target,
        TFIC_GATEWAY_DEFAULT_MODEL=MODEL,  # two models are served: without it /invocations would be a 400
        TFIC_GATEWAY_TIMEOUT_SECONDS="0.05",
        TFIC_GATEWAY_AUTH_TOKEN="s3cret",
        TFIC_LOG_LEVEL="info",
        TFIC_LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tfic_cli", "serve", "gateway"], env=environ, cwd=REPO, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    running = Process(process)
    reader = threading.Thread(target=running.read, daemon=True)
    reader.start()
    try:
        assert running.ready.wait(60) and running.port is not None, "".join(running.lines)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(30)
        reader.join(10)
        assert process.stderr is not None
        process.stderr.close()  # else its pipe is left to the garbage collector (a ResourceWarning, an error here)


def test_a_gateway_configured_by_its_variables_alone_uses_them(from_environment: Process) -> None:
    assert from_environment.port != 8080  # TFIC_GATEWAY_PORT=0: an ephemeral port
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000), (120, 30, 200)).save(buf, "PNG")  # ~100 ms to decode: past 0.05 s
    slow = buf.getvalue()
    bearer = {"Authorization": "Bearer s3cret", "Content-Type": "image/png"}
    with httpx.Client(base_url=f"http://127.0.0.1:{from_environment.port}", timeout=60) as client:
        assert client.get("/ping").status_code == 200
        refused = client.post("/invocations", content=slow, headers={"Content-Type": "image/png"})
        assert refused.status_code == 401  # TFIC_GATEWAY_AUTH_TOKEN
        # The default model and the inference target were taken (the call reached the inference service), and
        # its deadline was the variable's 0.05 s, which a longer request header does not extend.
        response = client.post("/invocations", content=slow, headers={**bearer, "X-Request-Timeout": "60"})
        assert response.status_code == 504, response.text
        assert response.json()["error"]["status"] == "DEADLINE_EXCEEDED"
    from_environment.process.send_signal(signal.SIGTERM)
    from_environment.process.wait(30)  # uvicorn re-raises the signal once it has shut down
    records = [json.loads(line) for line in from_environment.lines if line.startswith("{")]
    assert records and all(r["level"] in ("info", "warning") for r in records)  # TFIC_LOG_FORMAT, TFIC_LOG_LEVEL
    assert any(r["logger"] == "gateway.access" for r in records)
