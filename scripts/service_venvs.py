"""Install each service's extra alone into a fresh venv, start the service from it, and measure it.

    .venv/bin/python scripts/service_venvs.py [--dir DIR] [--starts N] gateway inference trainer

For each extra: ``python3.11 -m venv DIR/EXTRA``, ``pip install -c constraints.txt '.[EXTRA]'`` (what the
image's build stage installs, deploy/docker/install_deps.py), then the size of its site-packages (all of it,
and without pip/setuptools, which a venv brings whatever is installed), and the cold start: the seconds from
starting ``tfic serve EXTRA`` to its first healthy answer (gateway: ``GET /healthz``; inference and trainer:
``grpc.health.v1`` Check), the median of N starts. Prints one JSON object per extra and a Markdown table;
docs/deploy.md records the numbers. tests/packaging/test_extras.py uses the same functions (slow-marked).
The measuring process polls with its own grpcio, so run it with the dev venv's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("gateway", "inference", "trainer")
# Installed in every venv by `python -m venv`, not by tfic: left out of the "packages" size.
VENV_TOOLS = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")
STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class Measurement:
    extra: str
    install_seconds: float
    site_packages_mb: float  # everything in site-packages
    packages_mb: float  # without the venv's own pip/setuptools
    distributions: int
    cold_start_seconds: float | None  # median; None when not started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages under {venv}")
    return found[0]


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def sizes(venv: Path) -> tuple[float, float]:
    """(all of site-packages, without the venv's own tools) in MB (10^6 bytes)."""
    site = site_packages(venv)
    total = _size_mb(site)
    tools = sum(
        _size_mb(p) for p in site.iterdir() if p.name in VENV_TOOLS or p.name.startswith(("pip-", "setuptools-"))
    )
    return total, total - tools


def checkout_copy(dest: Path) -> Path:
    """The files of this checkout that git tracks or would track, copied to ``dest``: what a fresh clone or the
    image's build context holds, without the ignored ones (.venv, caches, the generated tfic/v1)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    for relative in filter(None, listed.decode().split("\0")):
        source = ROOT / relative
        if source.is_file():  # a tracked file deleted in the working tree is left out, as a commit would
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def create(venv: Path, extra: str, *, python: str = "python3.11") -> float:
    """A fresh venv at ``venv`` with ``tfic[extra]`` installed from a clean copy of this checkout (so the
    build generates the protos itself, as the image build does); the seconds it took."""
    shutil.rmtree(venv, ignore_errors=True)
    start = time.monotonic()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="tfic-src-") as tmp:
        source = checkout_copy(Path(tmp))
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
             f"{source}[{extra}]"],
            check=True,
        )  # fmt: skip
    return time.monotonic() - start


def distributions(venv: Path) -> dict[str, str]:
    """Installed distribution name (normalised) → version."""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import json, importlib.metadata as m; "
         "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[str, str] = json.loads(out)
    return found


def _http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def service_command(venv: Path, service: str, work: Path) -> tuple[list[str], Callable[[], bool]]:
    """``tfic serve SERVICE`` from ``venv`` on a free loopback port, and the check that it answers healthy."""
    port = _free_port()
    tfic = str(venv / "bin" / "tfic")
    common = ["--host", "127.0.0.1", "--port", str(port)]
    if service == "gateway":
        # No inference service behind it: /healthz (liveness) answers without one, as in a pod's first seconds.
        return [tfic, "serve", "gateway", *common, "--inference", "127.0.0.1:1"], lambda: _http_ok(port)
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    if service == "inference":
        argv = [tfic, "serve", "inference", *common, "--metrics-port", "-1", "--model-base-path", str(models)]
    elif service == "trainer":
        (work / "data").mkdir(exist_ok=True)
        argv = [tfic, "serve", "trainer", *common, "--metrics-port", "0", "--state-dir", str(work / "state"),
                "--model-base-path", str(models), "--data-root", str(work / "data")]  # fmt: skip
    else:
        raise ValueError(f"no service {service!r}")
    return argv, lambda: _grpc_serving(port)


def cold_start(venv: Path, service: str, work: Path) -> float:
    """Seconds from starting the service to its first healthy answer; the service is stopped (SIGTERM) after."""
    argv, healthy = service_command(venv, service, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFIC_")}
    log = work / f"{service}.log"
    with log.open("ab") as out:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        try:
            while not healthy():
                if proc.poll() is not None:
                    raise RuntimeError(f"{service} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                if time.monotonic() - start > STARTUP_TIMEOUT:
                    raise TimeoutError(f"{service} not healthy within {STARTUP_TIMEOUT:.0f}s")
                time.sleep(0.01)
            elapsed = time.monotonic() - start
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return elapsed


def measure(venv: Path, extra: str, starts: int) -> Measurement:
    seconds = create(venv, extra)
    total, packages = sizes(venv)
    startup = None
    if extra in SERVICES and starts > 0:
        with tempfile.TemporaryDirectory(prefix=f"tfic-{extra}-") as tmp:
            startup = statistics.median(cold_start(venv, extra, Path(tmp)) for _ in range(starts))
    return Measurement(extra, round(seconds, 1), round(total, 1), round(packages, 1), len(distributions(venv)),
                       None if startup is None else round(startup, 3))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extras", nargs="+", help="extras to install, each alone (gateway, inference, trainer, ...)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tfic-venvs")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per service (the median is reported)")
    args = parser.parse_args(argv)
    results = [measure(args.dir / extra, extra, args.starts) for extra in args.extras]
    for r in results:
        print(json.dumps(asdict(r)))
    print("\n| extra | site-packages | without pip/setuptools | distributions | cold start (median) |")
    print("|---|---|---|---|---|")
    for r in results:
        start = f"{r.cold_start_seconds:.2f} s" if r.cold_start_seconds is not None else "—"
        print(f"| `{r.extra}` | {r.site_packages_mb:.0f} MB | {r.packages_mb:.0f} MB | {r.distributions} | {start} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
