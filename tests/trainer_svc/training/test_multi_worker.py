"""Two worker processes train one model with MultiWorkerMirroredStrategy over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tfic import modeldir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_workers_produce_one_version(tmp_path: Path, digits_dir: Path) -> None:
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    base = tmp_path / "models"
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        }
        cmd = [
            sys.executable, "-m", "tfic_cli", "train", str(digits_dir), "--model-base-path", str(base),
            "--model-name", "mw", "--strategy", "multi-worker", "--model", "small_cnn", "--image_shape", "3,16,16",
            "--epochs", "2", "--batch_size", "32", "--seed", "3", "--metrics-log", str(tmp_path / f"w{index}.jsonl"),
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "wrote mw version 1" in outputs[0][0]
    assert "wrote mw" not in outputs[1][0]
    assert modeldir.list_versions(base / "mw") == [1]
    assert sorted(p.name for p in (base / "mw").iterdir()) == ["1"]
    # TensorBoard: the chief's event files only (one writer per run folder), kept after the work directory went.
    board = base / ".work" / "mw.tensorboard"
    assert [len(list((board / run).glob("events.out.tfevents.*"))) for run in ("train", "validation")] == [1, 1]
    for index in range(2):
        events = [json.loads(line) for line in (tmp_path / f"w{index}.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
