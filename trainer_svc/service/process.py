"""Worker processes: start one in its own session, signal its process group, recognise it after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import trainer_svc

WORKER_MODULE = "trainer_svc.service.worker"


def worker_argv(
    *,
    database: Path,
    job_id: str,
    attempt: int,
    work_dir: Path,
    cache_dir: Path,
    model_base_path: Path,
    data_roots: tuple[Path, ...],
    s3_endpoint_url: str | None,
    resume: bool,
) -> list[str]:
    argv = [
        sys.executable, "-m", WORKER_MODULE,
        "--database", str(database),
        "--job-id", job_id,
        "--attempt", str(attempt),
        "--work-dir", str(work_dir),
        "--cache-dir", str(cache_dir),
        "--model-base-path", str(model_base_path),
        "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    for root in data_roots:
        argv += ["--data-root", str(root)]
    if s3_endpoint_url:
        argv += ["--s3-endpoint-url", s3_endpoint_url]
    if resume:
        argv.append("--resume")
    return argv


def worker_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    # The worker must import this very copy of the code, installed or not.
    project = str(Path(trainer_svc.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


async def spawn(argv: list[str], log_path: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start a worker in a new session (its own process group). Its stdout is the event doorbell; its
    stderr is appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the worker's process group (its pid: it leads a session); False if it is gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_worker_alive(pid: int, job_id: str) -> bool:
    """Whether ``pid`` is still a worker of ``job_id`` (a restarted server finds orphans this way)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return WORKER_MODULE.encode() in cmdline and job_id.encode() in cmdline


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {returncode}"
