"""A multi-worker `tfic train` whose peers never come says so, gives up after its startup timeout, and stops on
SIGTERM, while waiting and while training: real processes, a TF_CONFIG on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TRAIN = [sys.executable, "-m", "tfic_cli", "train", "--strategy", "multi-worker", "--model", "small_cnn",
         "--image_shape", "3,16,16", "--batch_size", "32", "--model-name", "mw"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port held (bound, never listening) for the test, so connections to it are refused, and no one else
    takes it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def worker(
    tmp_path: Path, data: Path, workers: list[str], index: int, *flags: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    environ = {**os.environ, "TF_CONFIG": json.dumps(config), **(env or {})}
    command = [*TRAIN, str(data), "--model-base-path", str(tmp_path / "models"), *flags]
    return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(stream: object, text: str) -> list[str]:
    """Lines of ``stream`` up to and including the first that contains ``text`` (fails at end of stream)."""
    lines = []
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never came:\n" + "".join(lines[-30:]))


def test_a_worker_whose_peer_never_comes_says_so_and_gives_up_after_its_timeout(
    tmp_path: Path, digits_dir: Path
) -> None:
    with silent_port() as peer:
        own = f"127.0.0.1:{_free_port()}"
        workers = [own, f"127.0.0.1:{peer}"]
        env = {"TFIC_TRAIN_WORKER_STARTUP_TIMEOUT_SECONDS": "2"}  # the variable, as a manifest sets it
        process = worker(tmp_path, digits_dir, workers, 0, "--worker-wait-log-seconds", "0.5", env=env)
        _out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-3000:]
    waiting = [line for line in err.splitlines() if line.startswith("waiting for workers")]
    assert len(waiting) >= 2, err[-3000:]  # repeated while it waits
    assert waiting[0].startswith(f"waiting for workers 127.0.0.1:{peer} (1 of 2 listening; this is worker 0 at {own}")
    assert f"of the cluster {own}, 127.0.0.1:{peer}" in waiting[0]
    assert (
        f"tfic train: error: gave up waiting for workers after 2 s: 127.0.0.1:{peer} not listening (worker 0 at {own}"
        in err
    )
    assert "Traceback" not in err
    assert not (tmp_path / "models" / "mw").exists()


def test_sigterm_while_waiting_for_workers_stops_the_worker_at_once(tmp_path: Path, digits_dir: Path) -> None:
    with silent_port() as peer:
        workers = [f"127.0.0.1:{peer}", f"127.0.0.1:{_free_port()}"]
        process = worker(tmp_path, digits_dir, workers, 1, "--worker-startup-timeout-seconds", "600")
        try:
            assert process.stderr is not None
            read_until(process.stderr, "waiting for workers")
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=30)  # the 600 s timeout is far away: the signal ended it
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "tfic train: stopped by SIGTERM while waiting for workers (worker 1)" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_sigterm_during_multi_worker_training_ends_the_worker(tmp_path: Path, digits_dir: Path) -> None:
    """TensorFlow's SIGTERM handler, installed with the strategy, would only record the signal; ours is put back."""
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    flags = ("--epochs", "200", "--json")
    processes = [worker(tmp_path, digits_dir, workers, index, *flags) for index in range(2)]
    try:
        chief = processes[0]
        assert chief.stdout is not None
        read_until(chief.stdout, '"type": "epoch"')  # training has begun on both (the collectives need both)
        chief.send_signal(signal.SIGTERM)
        chief.wait(timeout=60)
        assert chief.returncode == -signal.SIGTERM  # the default action: terminated by the signal
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
