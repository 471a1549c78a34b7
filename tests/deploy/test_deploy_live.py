"""The real services, started as their containers start them, answer the questions their probes ask.

Each service whose package exists runs as a subprocess with the container's command line (``tfic`` + the
manifest's args), the container's environment from the rendered cpu overlay (ConfigMaps and literal env) and
two kinds of overrides only: ports become free local ports, and paths under a volume mount become folders
under a temporary directory (the "volumes"). The inference service gets a real tiny model; the gateway talks
to that inference service through the same ``dns:///`` target form the manifest uses. Then every startup,
liveness and readiness probe of the manifests, the image's HEALTHCHECK command and the metrics the autoscalers
read are checked against the running processes, and SIGTERM must drain and stop each one in time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from deploy_support import (
    DEPLOY,
    DOCKERFILE,
    K8S,
    REPO,
    SERVICES,
    Obj,
    Service,
    container,
    container_env,
    find,
    parse_cli,
    parse_dockerfile,
    render,
    service_available,
)

OVERLAY = "overlays/cpu"
STARTUP_SECONDS = 60.0
# The only timing change: the manifests' inference drain (10 s) would dominate this test's run time.
DRAIN_SECONDS = "2"
STAGES = parse_dockerfile(DOCKERFILE)


def _load_healthcheck() -> ModuleType:
    path = DEPLOY / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("tfic_healthcheck", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEALTH = _load_healthcheck()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    service: Service
    process: subprocess.Popen[bytes] | None
    container: Obj
    env: dict[str, str]
    ports: dict[int, int]  # the manifest's port → the local one
    log: Path
    grace: int  # terminationGracePeriodSeconds
    ready_without_model: bool | None = None  # inference: its readiness before a version was published

    def port(self, manifest_port: int | str) -> int:
        if isinstance(manifest_port, str):
            manifest_port = next(int(p["containerPort"]) for p in self.container["ports"] if p["name"] == manifest_port)
        return self.ports[manifest_port]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, f"{self.service.name} was not started"
        return self.process

    def alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"{self.service.name} exited with {code}:\n{self.tail()}"


def _command(args: list[str]) -> list[str]:
    """The image's ``tfic`` console script is ``tfic_cli.main:main``; run that function from this checkout (an
    editable install made before a service package existed would not find it through the script)."""
    return [sys.executable, "-m", "tfic_cli", *args]


def _volume_paths(value: str, mounts: dict[str, str], root: Path) -> str:
    """Rewrite absolute paths under a container mount to the local folder standing in for that volume."""
    parts = []
    for item in value.split(","):
        local = item
        for mount_path, name in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if item == mount_path or item.startswith(mount_path + "/"):
                local = str(root / name) + item[len(mount_path) :]
                break
        parts.append(local)
    return ",".join(parts)


def _plan(service: Service, docs: list[Obj], root: Path) -> Live:
    """The container's command line and environment, with local ports and folders for its volumes; not started."""
    workload = find(docs, service.kind, service.workload)
    c = container(workload, service.container)
    env = container_env(docs, c)
    manifest_args = parse_cli(list(c["args"]), env)
    ports = {manifest_args.port: _free_port()}
    env[service.port_env] = str(ports[manifest_args.port])
    if service.metrics_port_env:
        ports[manifest_args.metrics_port] = _free_port()
        env[service.metrics_port_env] = str(ports[manifest_args.metrics_port])
    volumes = root / service.name
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    for name in mounts.values():
        (volumes / name).mkdir(parents=True, exist_ok=True)
    env = {k: _volume_paths(v, mounts, volumes) for k, v in env.items()}
    grace = int(workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    return Live(service, None, c, env, ports, root / f"{service.name}.log", grace)


def _launch(live: Live) -> None:
    with live.log.open("wb") as log:
        live.process = subprocess.Popen(
            _command(list(live.container["args"])),
            cwd=REPO,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("TFIC_")}, **live.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _publish(model: Path, base: Path) -> None:
    """Add a model version the way the trainer does: staged under a .tmp- name, then one rename."""
    staging = base / model.parent.name / f".tmp-{model.name}"
    shutil.copytree(model, staging)
    staging.rename(staging.with_name(model.name))


def _probe_ok(live: Live, probe: Obj) -> bool:
    if "grpc" in probe:
        return bool(HEALTH.check_grpc(live.port(probe["grpc"]["port"]), probe["grpc"].get("service", ""), timeout=2))
    if "httpGet" in probe:
        return bool(HEALTH.check_http(live.port(probe["httpGet"]["port"]), probe["httpGet"]["path"], timeout=2))
    raise AssertionError(f"unexpected probe {probe}")


def _eventually(live: Live, check: Callable[[], bool], what: str, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        live.alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{live.service.name}: {what} not true after {timeout:.0f} s:\n{live.tail()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict[str, Live]]:
    """Every available service, started at once; stopped (killed if need be) at the end.

    The inference service starts on an empty model repository (ready only later, like a fresh cluster) and the
    test publishes a real tiny model while it starts, so training it overlaps the services' start-up.
    """
    docs = render(OVERLAY)
    root = tmp_path_factory.mktemp("live")
    running = {s.name: _plan(s, docs, root) for s in SERVICES if service_available(s)}
    if "inference" in running:
        running["inference"].env["TFIC_INFERENCE_DRAIN_SECONDS"] = DRAIN_SECONDS
        if "gateway" in running:
            # dns:///tfic-inference-headless:8500 → the same resolver, aimed at the local inference process.
            env = running["gateway"].env
            m = re.fullmatch(r"dns:///([^:]+):(\d+)", env["TFIC_GATEWAY_INFERENCE"])
            assert m, env["TFIC_GATEWAY_INFERENCE"]
            env["TFIC_GATEWAY_INFERENCE"] = f"dns:///localhost:{running['inference'].port(int(m.group(2)))}"
    try:
        for one in running.values():
            _launch(one)
        if "inference" in running:
            model: Path = request.getfixturevalue("trained_model")  # BASE/NAME/VERSION
            inference = running["inference"]
            probes = inference.container
            _eventually(inference, lambda: _probe_ok(inference, probes["startupProbe"]), "the startup probe")
            inference.ready_without_model = _probe_ok(inference, probes["readinessProbe"])
            _publish(model, Path(inference.env["TFIC_MODEL_BASE_PATH"]))
        yield running
    finally:
        for one in running.values():
            if one.process is not None and one.process.poll() is None:
                os.killpg(one.process.pid, signal.SIGKILL)
                one.process.wait(timeout=30)


def _running(live: dict[str, Live], service: Service) -> Live:
    if service.name not in live:
        pytest.skip(f"{service.module} is not built yet")
    return live[service.name]


def test_services_covered(live: dict[str, Live]) -> None:
    """Record which services this run started (all three once their packages exist)."""
    print("live services:", ", ".join(sorted(live)) or "none")
    assert live, "no service package is available"


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_probes_answer(live: dict[str, Live], service: Service) -> None:
    one = _running(live, service)
    c = one.container
    _eventually(one, lambda: _probe_ok(one, c["startupProbe"]), "the startup probe")
    assert _probe_ok(one, c["livenessProbe"]), "liveness after startup"
    if service.name == "gateway" and "inference" not in live:
        return  # ready only once an inference service is
    _eventually(one, lambda: _probe_ok(one, c["readinessProbe"]), "the readiness probe")


def test_inference_is_live_but_unready_until_a_version_is_published(live: dict[str, Live]) -> None:
    """On an empty model repository (a fresh cluster) the pod must stay up (startup and liveness pass) but get
    no traffic; the version published while it runs is hot-loaded and makes it ready (test_probes_answer)."""
    one = _running(live, next(s for s in SERVICES if s.name == "inference"))
    assert one.ready_without_model is False


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
def test_image_healthcheck_passes(live: dict[str, Live], service: Service) -> None:
    """The Dockerfile's HEALTHCHECK command, run with the container's environment, says healthy."""
    one = _running(live, service)
    if service.name == "gateway" and "inference" not in live:
        pytest.skip("the gateway's health check needs an inference service")
    _eventually(one, lambda: _probe_ok(one, one.container["readinessProbe"]), "readiness")
    check = str(STAGES[service.docker_target].inherited("healthcheck"))
    command = check.split(" CMD ", 1)[1].replace("python /opt/tfic/healthcheck.py", "")
    script = DEPLOY / "docker" / "healthcheck.py"
    done = subprocess.run(
        f'"{sys.executable}" "{script}" {command}', shell=True, env={**os.environ, **one.env}, capture_output=True,
        text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_autoscaling_metrics_are_served(live: dict[str, Live]) -> None:
    """The metrics endpoints the ServiceMonitors scrape serve the series prometheus-adapter turns into the HPAs'
    metrics (inference: once a model is loaded, as the queue depth is per model)."""
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    series = {r["seriesQuery"].split("{")[0].strip("'\" ") for r in adapter}
    docs = render(OVERLAY)
    checked = 0
    for name, one in live.items():
        monitor = find(docs, "ServiceMonitor", one.service.workload)
        wanted = {s for s in series if s.startswith(f"tfic_{name}_")}
        if name == "inference":
            _eventually(one, lambda one=one: _probe_ok(one, one.container["readinessProbe"]), "ready")  # type: ignore[misc]
        for endpoint in monitor["spec"]["endpoints"]:
            url = f"http://127.0.0.1:{one.port(endpoint['port'])}{endpoint['path']}"
            if name == "gateway":  # a counter appears once a request was counted; 503 without a model counts too
                with contextlib.suppress(urllib.error.HTTPError):
                    urllib.request.urlopen(f"http://127.0.0.1:{one.port('http')}/ping", timeout=5).close()
            _eventually(one, functools.partial(_exposes, url, wanted), f"{sorted(wanted)} on {url}", timeout=15)
            checked += len(wanted)
    assert checked or not ({"inference", "gateway"} & set(live))


def _exposes(url: str, series: set[str]) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return all(re.search(rf"^{s}(\{{|\s)", text, re.MULTILINE) for s in series)


def test_sigterm_drains_and_stops_in_time(live: dict[str, Live]) -> None:
    """SIGTERM (what kubelet sends): readiness fails at once, then the process stops within its grace period."""
    for one in live.values():
        _eventually(one, lambda one=one: _probe_ok(one, one.container["livenessProbe"]), "liveness")  # type: ignore[misc]
    started = time.monotonic()
    for one in live.values():
        one.proc.send_signal(signal.SIGTERM)
    for one in live.values():
        probe = one.container["readinessProbe"]
        if "grpc" not in probe:
            continue
        deadline = time.monotonic() + 5
        while one.proc.poll() is None and _probe_ok(one, probe) and time.monotonic() < deadline:
            time.sleep(0.05)
        if one.service.name == "inference":  # it drains for DRAIN_SECONDS: NOT_SERVING while still up
            assert one.proc.poll() is None and not _probe_ok(one, probe), f"no drain:\n{one.tail()}"
    for one in live.values():
        remaining = one.grace - (time.monotonic() - started)
        try:
            code = one.proc.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{one.service.name} outlived terminationGracePeriodSeconds={one.grace}:\n{one.tail()}")
        # uvicorn (the gateway) re-raises the SIGTERM it handled once it has shut down cleanly: status 143 under
        # tini, which Kubernetes treats like 0 for a terminated pod.
        allowed = (0, -signal.SIGTERM) if one.service.name == "gateway" else (0,)
        assert code in allowed, f"{one.service.name} exited with {code}:\n{one.tail()}"
