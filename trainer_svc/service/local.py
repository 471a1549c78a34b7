"""A Trainer service in a child process on a free port, for scripts (``make demo``) and tests.

    with LocalTrainer(state_dir, model_base_path, [data_root]) as trainer:
        tfic(["jobs", "submit", ..., "--server", trainer.address, "--wait"])

The server is ``python -m trainer_svc`` with ``--port 0 --port-file``; leaving the block stops it
with SIGTERM (graceful shutdown), or SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tfic.errors import Unavailable


class LocalTrainer:
    def __init__(
        self,
        state_dir: Path,
        model_base_path: Path,
        data_roots: Sequence[Path],
        *,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.model_base_path = Path(model_base_path)
        self.data_roots = [Path(r) for r in data_roots]
        self.extra_args = list(extra_args)
        self.log_path = log_path or self.state_dir / "server.log"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise Unavailable("the local trainer is not running")
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalTrainer:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.state_dir / "trainer.port"
        port_file.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "trainer_svc", "--log-level", "info",
            "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file), "--metrics-port", "-1",
            "--state-dir", str(self.state_dir), "--model-base-path", str(self.model_base_path),
        ]  # fmt: skip
        for root in self.data_roots:
            argv += ["--data-root", str(root)]
        argv += self.extra_args
        project = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (project, os.environ.get("PYTHONPATH"))))}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + self.start_timeout
        while not port_file.is_file():
            if self.process.poll() is not None:
                raise Unavailable(f"the trainer exited with status {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise Unavailable(f"the trainer did not start within {self.start_timeout:.0f}s; see {self.log_path}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        process, self.process, self.port = self.process, None, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()

    def __enter__(self) -> LocalTrainer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
