"""tfic against BentoML and LitServe: the same SavedModel, the same decode, one load generator, one run.

For each model: the in-process limit (:mod:`bench.inference.inprocess`: decode + model, no RPC, best batch
size), then the paths up at once and loaded in turn at each concurrency, rounds interleaved (ABCD, DCBA,
…) so the shared machine's drift hits every path alike; while one path is measured the servers it does not
use are stopped (SIGSTOP), since an idle LitServe alone takes a tenth of a core polling its queues:

* ``tfic-grpc``: ``tfic.v1.Classifier/Classify`` on the inference service (its defaults), every probability
  and no label strings (``omit_labels``: what the peers answer, and what the gateway asks);
* ``tfic-gateway``: ``POST /invocations`` (raw JPEG, ``application/json`` answer) through tfic's gateway;
* ``bentoml``: a batchable BentoML API (``bench.peers.bentoml_service``, max batch 32 as tfic's);
* ``litserve``: LitServe with ``max_batch_size`` 32 and ``batch_timeout`` 1 ms (``bench.peers.litserve_server``);
* ``tfic-grpc-alt`` with ``--tfic-alt FLAGS``: a second inference service with those flags (a setting
  compared with the default in the same run).

BentoML and LitServe run in their own virtualenv (``make bench-peers-venv``; why in
``bench/peers/requirements.txt``). CPU per request is every server process's (with its children: BentoML
and LitServe run their model in worker processes) and the load generator's, from ``/proc``. Writes
``bench/peers/results/peers.json`` and ``docs/peers.png``::

    python -m bench.peers.run --quick          # bench32 and imagenet, c=1,4,16, 3-second runs, 2 rounds
    python -m bench.peers.run                  # three models, c=1,2,4,8,16,32, 4-second runs, 2 rounds
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import uvloop
from grpc import aio

from bench.gateway.loadgen import HttpConnection, Result, grpc_senders, run_closed_loop
from bench.inference.fixtures import parse_model_spec, write_images
from bench.inference.run import inference_server, json_lines, scrape, server_side

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PEERS_VENV = ROOT / ".venv-peers"
PATHS = ("tfic-grpc", "tfic-gateway", "bentoml", "litserve")
ALT = "tfic-grpc-alt"  # the inference service with --tfic-alt's flags, when given
GOALS = {"bentoml": 1.5, "litserve": 1.3}  # tfic gRPC / peer at c=16
GATEWAY_GOAL = 0.9


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _server(command: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` in a session of its own, stopped with all its processes: LitServe's and BentoML's workers
    outlive a SIGTERM to the process that started them, and an orphan spinning on the shared cores would
    weigh on every later measurement."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=_env(**env), cwd=ROOT, start_new_session=True
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            time.sleep(1)  # the group's other processes handle their SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def _wait_http(port: int, path: str, body: bytes, content_type: str, process: subprocess.Popen[bytes]) -> None:
    """POST a real request until it answers 200 (nothing is timed here)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"nothing answered on port {port} in 10 minutes")


class _ProcessTable:
    """One read of ``/proc``: every live process's ``stat`` fields (after the command name) and children."""

    def __init__(self) -> None:
        self.stats: dict[int, list[str]] = {}
        self.children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.stats[int(entry)] = fields
            self.children.setdefault(int(fields[1]), []).append(int(entry))

    def tree(self, root: int) -> list[int]:
        """``root`` and its live descendants, parents before children."""
        tree, todo = [], deque([root])
        while todo:
            pid = todo.popleft()
            if pid in self.stats:
                tree.append(pid)
            todo.extend(self.children.get(pid, ()))
        return tree

    def cpu_seconds(self, root: int, tick: int) -> float:
        """CPU seconds of ``root`` and all its descendants (live ones; workers live as long as the server)."""
        return sum((int(self.stats[p][11]) + int(self.stats[p][12])) / tick for p in self.tree(root))


# The processes each path needs running, its own server last; the others are stopped (SIGSTOP) while it is measured.
NEEDS = {
    "tfic-grpc": ("tfic",),
    "tfic-gateway": ("tfic", "gateway"),
    "bentoml": ("bentoml",),
    "litserve": ("litserve",),
    ALT: ("tfic-alt",),
}


@contextmanager
def _only(path: str, pids: dict[str, int]) -> Iterator[None]:
    """Stop every server ``path`` does not use while it is measured, and resume them after.

    An idle server is not idle: LitServe's worker polls its queues (0.11 cores measured with no request
    in flight), and the CPU it takes is CPU the measured server lacks. A real host runs one of them, so
    each is measured alone. Each server is stopped with its whole process tree, found by parent pid: BentoML's
    process manager starts every worker in a session of its own, so its process group holds only itself.
    Parents stop before their children (none is left to restart a stopped worker) and resume after them.
    """
    table = _ProcessTable()
    stopped = [pid for name in pids if name not in NEEDS[path] for pid in table.tree(pids[name])]
    try:
        for pid in stopped:
            _signal(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in reversed(stopped):
            _signal(pid, signal.SIGCONT)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _probe(pids: dict[str, int]) -> Callable[[], tuple[float, ...]]:
    tick = os.sysconf("SC_CLK_TCK")
    names = list(pids)

    def read() -> tuple[float, ...]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        table = _ProcessTable()
        return (*(table.cpu_seconds(pids[n], tick) for n in names), usage.ru_utime + usage.ru_stime)

    return read


def _summary(results: list[Result], cpu_index: dict[str, int], server: str) -> dict[str, Any]:
    requests = sum(r.requests for r in results)
    seconds = sum(r.seconds for r in results)
    latencies = [x for r in results for x in r.latencies_ms]
    merged = Result(server, results[0].concurrency, requests, sum(r.errors for r in results), seconds, latencies)
    cpu = sum(r.cpu_seconds[cpu_index[server]] for r in results)
    client = sum(r.cpu_seconds[-1] for r in results)
    return {
        "throughput": merged.throughput,
        "p50_ms": merged.p50,
        "p99_ms": merged.percentile(99),
        "requests": requests,
        "errors": merged.errors,
        "server_cpu_ms_per_request": 1e3 * cpu / max(1, requests),
        "client_cpu_ms_per_request": 1e3 * client / max(1, requests),
        "best_round_throughput": max(r.throughput for r in results),
        "best_round_p50_ms": min(r.p50 for r in results),
    }


async def _measure(
    targets: dict[str, tuple[str, str]],
    ports: dict[str, int],
    model: str,
    image: bytes,
    pids: dict[str, int],
    concurrency: list[int],
    seconds: float,
    rounds: int,
) -> list[dict[str, Any]]:
    """``targets``: the gRPC paths (``tfic-grpc``, and ``tfic-grpc-alt`` if started) → (HOST:PORT, metrics URL)."""
    probe = _probe(pids)
    cpu_index = {name: i for i, name in enumerate(pids)}
    paths = _paths(ALT in targets)
    b64 = base64.b64encode(image).decode()
    bodies = {
        "tfic-gateway": ("/invocations", image, {"Content-Type": "image/jpeg", "Accept": "application/json"}),
        "bentoml": ("/classify", json.dumps({"images": [b64]}).encode(), {"Content-Type": "application/json"}),
        "litserve": ("/predict", json.dumps({"image": b64}).encode(), {"Content-Type": "application/json"}),
    }
    rows = []
    async with contextlib.AsyncExitStack() as stack:
        channels = {p: await stack.enter_async_context(aio.insecure_channel(t)) for p, (t, _) in targets.items()}
        for c in concurrency:
            runs: dict[str, list[Result]] = {p: [] for p in paths}
            batch_sizes: dict[str, list[float]] = {p: [] for p in targets}
            for round_ in range(rounds):
                for path in paths if round_ % 2 == 0 else paths[::-1]:
                    with _only(path, pids):
                        if path in targets:
                            metrics = targets[path][1]
                            before = scrape(metrics, model)
                            # Every probability, no label strings: what the peers answer (and the gateway asks).
                            senders = grpc_senders(channels[path], model, image, c, omit_labels=True)
                            runs[path].append(await run_closed_loop(path, senders, seconds, 1.0, probe))
                            batch_sizes[path].append(server_side(before, scrape(metrics, model))["mean_batch_size"])
                            continue
                        route, body, headers = bodies[path]
                        conns = [HttpConnection("127.0.0.1", ports[path], route, body, headers) for _ in range(c)]
                        runs[path].append(await run_closed_loop(path, [x.send for x in conns], seconds, 1.0, probe))
                        for conn in conns:
                            await conn.close()
            row: dict[str, Any] = {"concurrency": c}
            for path in paths:
                row[path] = _summary(runs[path], cpu_index, NEEDS[path][-1])
            # The gateway's own CPU is on top of the inference service's it calls.
            row["tfic-gateway"]["server_cpu_ms_per_request"] += _summary(runs["tfic-gateway"], cpu_index, "tfic")[
                "server_cpu_ms_per_request"
            ]
            for path, sizes in batch_sizes.items():
                row[path]["mean_batch_size"] = sum(sizes) / len(sizes)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def run_model(spec: str, work: Path, images: Path, args: argparse.Namespace) -> dict[str, Any]:
    name, kind = parse_model_spec(spec)
    base = work / f"models-{name}"
    code = (
        "import sys; from pathlib import Path; from bench.inference.fixtures import export_bench_model; "
        f"print(export_bench_model(Path(sys.argv[1]), {name!r}, {kind!r}))"
    )
    done = subprocess.run([PYTHON, "-c", code, str(base)], check=True, env=_env(), cwd=ROOT, capture_output=True)
    version = Path(done.stdout.decode().strip().splitlines()[-1])
    print(f"== {name}: in-process limit", file=sys.stderr, flush=True)
    (limit,) = json_lines(
        ["-m", "bench.inference.inprocess", "--model-dir", str(version), "--images", str(images),
         "--decode-workers", "2", "--seconds", str(max(1.5, args.seconds / 2))],
        timeout=1800,
    )  # fmt: skip
    image = sorted(images.glob("*.jpg"))[0].read_bytes()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    peers_python = str(PEERS_VENV / "bin" / "python")
    ports = {p: _free_port() for p in ("tfic-gateway", "bentoml", "litserve")}
    print(f"== {name}: starting tfic, its gateway, BentoML and LitServe", file=sys.stderr, flush=True)
    with ExitStack() as stack:
        target, metrics = stack.enter_context(inference_server(base, name, ["--decode-workers", "2"]))
        targets = {"tfic-grpc": (target, metrics)}
        if args.tfic_alt:
            targets[ALT] = stack.enter_context(
                inference_server(base, name, ["--decode-workers", "2", *shlex.split(args.tfic_alt)])
            )
        gateway = stack.enter_context(
            _server(
                [PYTHON, "-m", "gateway", "--log-level", "warning", "--host", "127.0.0.1",
                 "--port", str(ports["tfic-gateway"]), "--inference", target, "--default-model", name],
                logs / f"gateway-{name}.log",
            )
        )  # fmt: skip
        peer_env = {"PEER_MODEL_DIR": str(version), "PEER_MAX_BATCH": "32"}
        bento = stack.enter_context(
            _server(
                [peers_python, "-m", "bentoml", "serve", "bench.peers.bentoml_service:Classifier",
                 "--host", "127.0.0.1", "--port", str(ports["bentoml"])],
                logs / f"bentoml-{name}.log",
                **peer_env,
            )
        )  # fmt: skip
        lit = stack.enter_context(
            _server(
                [peers_python, "-m", "bench.peers.litserve_server", "--port", str(ports["litserve"])],
                logs / f"litserve-{name}.log",
                **peer_env,
            )
        )
        b64 = base64.b64encode(image).decode()
        _wait_http(ports["tfic-gateway"], "/invocations", image, "image/jpeg", gateway)
        _wait_http(ports["bentoml"], "/classify", json.dumps({"images": [b64]}).encode(), "application/json", bento)
        _wait_http(ports["litserve"], "/predict", json.dumps({"image": b64}).encode(), "application/json", lit)
        pids = {"tfic": _pid_listening(target), "gateway": gateway.pid, "bentoml": bento.pid, "litserve": lit.pid}
        if ALT in targets:
            pids["tfic-alt"] = _pid_listening(targets[ALT][0])
        load_before = os.getloadavg()
        rows = uvloop.run(_measure(targets, ports, name, image, pids, args.concurrency, args.seconds, args.rounds))
    return {
        "model": name,
        "version_dir": str(version),
        "in_process": limit,
        "tfic_alt_flags": args.tfic_alt,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
        "goals": goals(limit, rows),
    }


def _pid_listening(target: str) -> int:
    """The pid of the ``python -m inference_svc`` listening on ``target`` (bench.inference.run starts it)."""
    port = int(target.rsplit(":", 1)[1])
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inode = fields[9]
    if inode is None:
        raise RuntimeError(f"nothing listens on {target}")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == f"socket:[{inode}]":
                    return int(entry)
        except OSError:
            continue
    raise RuntimeError(f"no process holds the socket listening on {target}")


def goals(limit: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_c = {r["concurrency"]: r for r in rows}
    out: dict[str, Any] = {}
    if 16 in by_c:
        row = by_c[16]
        grpc = row["tfic-grpc"]["throughput"]
        fraction = grpc / limit["limit_images_per_second"]
        out["c16_fraction_of_in_process_limit"] = {
            "value": fraction,
            "goal": 0.85,
            "met": fraction >= 0.85,
            "mean_batch_size": row["tfic-grpc"]["mean_batch_size"],
        }
        for peer, goal in GOALS.items():
            ratio = grpc / row[peer]["throughput"]
            out[f"c16_tfic_grpc_over_{peer}"] = {"value": ratio, "goal": goal, "met": ratio >= goal}
        ratio = row["tfic-gateway"]["throughput"] / grpc
        out["c16_gateway_over_tfic_grpc"] = {"value": ratio, "goal": GATEWAY_GOAL, "met": ratio >= GATEWAY_GOAL}
    if 1 in by_c:
        gap = by_c[1]["tfic-grpc"]["best_round_p50_ms"] - limit["single_image_p50_ms"]
        out["c1_p50_minus_in_process_ms"] = {"value": gap, "goal": 1.0, "met": gap <= 1.0}
    return out


def _paths(alt: bool) -> tuple[str, ...]:
    return (*PATHS, ALT) if alt else PATHS


def table(entry: dict[str, Any]) -> str:
    limit = entry["in_process"]
    paths = _paths(ALT in entry["rows"][0])
    lines = [
        f"**{entry['model']}** — in-process limit {limit['limit_images_per_second']:.0f} images/s "
        f"(batch {limit['best_batch_size']}), single image p50 {limit['single_image_p50_ms']:.2f} ms",
        "",
        "| clients | " + " | ".join(f"{p} img/s (p50 ms, CPU ms/req)" for p in paths) + " | tfic mean batch |",
        "|---:|" + "---:|" * (len(paths) + 1),
    ]
    for row in entry["rows"]:
        cells = [
            f"{row[p]['throughput']:.0f} ({row[p]['p50_ms']:.1f}, {row[p]['server_cpu_ms_per_request']:.2f})"
            for p in paths
        ]
        lines.append(
            f"| {row['concurrency']} | "
            + " | ".join(cells)
            + " | "
            + " / ".join(f"{row[p]['mean_batch_size']:.1f}" for p in paths if "mean_batch_size" in row[p])
            + " |"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for ax, entry in zip(axes[0], models, strict=True):
        xs = [r["concurrency"] for r in entry["rows"]]
        for p, style in zip(_paths(ALT in entry["rows"][0]), ("o-", "s-", "^--", "v--", "o:"), strict=False):
            label = f"tfic-grpc {entry['tfic_alt_flags']}" if p == ALT else p
            ax.plot(xs, [r[p]["throughput"] for r in entry["rows"]], style, label=label)
        limit = entry["in_process"]["limit_images_per_second"]
        ax.axhline(limit, color="gray", linestyle=":", label=f"in-process limit ({limit:.0f}/s)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients (closed loop, one image per request)")
        ax.set_ylabel("images / s")
        ax.set_title(f"{entry['model']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="bench32:32,bench96:96,imagenet:efficientnet_lite0")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="bench32 and imagenet, c=1,4,16, 3-second runs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tfic-bench-inference"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "peers" / "results" / "peers.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "peers.png")
    parser.add_argument(
        "--tfic-alt",
        metavar="FLAGS",
        help='a second inference service with these flags, beside the default (--tfic-alt="--tf-intra-op-threads 1")',
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.concurrency, args.seconds = "bench32:32,imagenet:efficientnet_lite0", "1,4,16", 3.0
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if not (PEERS_VENV / "bin" / "python").exists():
        raise SystemExit(f"{PEERS_VENV} is missing: run `make bench-peers-venv` first")
    images = args.work / "images"
    write_images(images, 64, 640, 480)
    started = time.time()
    entries = [run_model(spec, args.work, images, args) for spec in args.models.split(",")]
    results = {
        "machine": {"cores": len(os.sched_getaffinity(0))},
        "command": "python -m bench.peers.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "wall_seconds": time.time() - started,
        "image": "one photo-like 640x480 JPEG (~59 KB) per request",
        "models": entries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot)
    for entry in entries:
        print(table(entry) + "\n")
        print(json.dumps(entry["goals"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
