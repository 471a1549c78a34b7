"""Shared helpers of the deploy tests: render the kustomizations, look objects up, and read the services'
own contracts (CLI flags and their environment variables, health services, metrics) from their code."""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
SCHEMAS = DEPLOY / "schemas"
NAMESPACE = "tfic"

OVERLAYS = ("cpu", "gpu", "dev", "keda")
TRAINING = ("indexed-job", "tfjob")
PRODUCTION = ("cpu", "gpu", "keda")  # every overlay but dev
# Every combination docs/deploy.md offers, as users make it: the components appended to the overlay's own
# `components:` (after those it lists). Each production overlay with each optional component alone and with
# all of them; KEDA on GPUs is components/keda-gpu (components/keda carries the CPU thresholds).
SERVICE_COMPONENTS = ("trainer-tls", "inference-tls", "models-s3")
TRAINING_COMPONENTS = ("training-gpu", "training-kueue")


def _with(base: str, components: tuple[str, ...]) -> str:
    return "+".join((base, *(f"components/{c}" for c in components)))


COMBINATIONS = tuple(
    dict.fromkeys(
        [
            *(_with(f"overlays/{o}", (c,)) for o in PRODUCTION for c in SERVICE_COMPONENTS),
            *(_with(f"overlays/{o}", SERVICE_COMPONENTS) for o in PRODUCTION),
            _with("overlays/gpu", ("keda-gpu",)),
            _with("overlays/gpu", ("keda-gpu", *SERVICE_COMPONENTS)),
            *(_with(f"training/{t}", (c,)) for t in TRAINING for c in TRAINING_COMPONENTS),
            *(_with(f"training/{t}", TRAINING_COMPONENTS) for t in TRAINING),
        ]
    )
)
# Every kustomization users apply (the base is applied through the overlays, but must render alone too).
KUSTOMIZATIONS = (
    "base",
    *(f"overlays/{o}" for o in OVERLAYS),
    *(f"training/{t}" for t in TRAINING),
    *COMBINATIONS,
)
SECRET_TEMPLATES = tuple(sorted((K8S / "secrets").glob("*.yaml")))

Obj = dict[str, Any]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


@dataclass(frozen=True)
class Service:
    """How one tfic service is packaged and deployed; the tests check each fact against the code."""

    name: str  # tfic serve <name>
    module: str  # the package's entry point, which `tfic serve NAME` imports (tfic_cli/serve.py)
    kind: str  # the workload kind in the base
    workload: str
    container: str
    image: str  # the image name in the manifests (kustomize images: rewrite it)
    docker_target: str
    grpc_service: str | None  # the readiness health service (gRPC services), from the protos
    http_ready: str | None  # the readiness path (HTTP services)
    port_env: str
    metrics_port_env: str | None
    metrics: str  # module:class holding the service's Prometheus metrics


def _proto_service(module: str, name: str) -> str:
    pb = importlib.import_module(module)
    full_name: str = pb.DESCRIPTOR.services_by_name[name].full_name
    return full_name


SERVICES: tuple[Service, ...] = (
    Service(
        "inference", "inference_svc.main", "Deployment", "tfic-inference", "inference", "tfic-inference", "inference",
        _proto_service("tfic.v1.classifier_pb2", "Classifier"), None,
        "TFIC_INFERENCE_PORT", "TFIC_INFERENCE_METRICS_PORT", "inference_svc.metrics:Metrics",
    ),
    Service(
        "trainer", "trainer_svc.main", "StatefulSet", "tfic-trainer", "trainer", "tfic-trainer", "trainer",
        _proto_service("tfic.v1.trainer_pb2", "Trainer"), None,
        "TFIC_TRAINER_PORT", "TFIC_TRAINER_METRICS_PORT", "trainer_svc.service.metrics:TrainerMetrics",
    ),
    Service(
        "gateway", "gateway.main", "Deployment", "tfic-gateway", "gateway", "tfic-gateway", "gateway",
        None, "/readyz", "TFIC_GATEWAY_PORT", "TFIC_GATEWAY_METRICS_PORT", "gateway.metrics:GatewayMetrics",
    ),
)  # fmt: skip
SERVICE_BY_NAME = {s.name: s for s in SERVICES}


# ------------------------------------------------------------------------------------------ rendering


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is needed to render the kustomizations (kubectl kustomize); install kubectl 1.27+")
    return found


def kustomize(path: Path) -> list[Obj]:
    done = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@functools.cache
def _render(name: str) -> tuple[Obj, ...]:
    if "+" not in name:
        return tuple(kustomize(K8S / name))
    overlay, *components = name.split("+")
    with tempfile.TemporaryDirectory(prefix="tfic-kustomize-") as tmp:
        return tuple(kustomize(_overlay_with(K8S / overlay, [K8S / c for c in components], Path(tmp))))


def _overlay_with(overlay: Path, components: list[Path], folder: Path) -> Path:
    """A copy of ``overlay`` in ``folder`` whose kustomization also lists ``components`` (paths made relative)."""
    data = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    for key in ("resources", "components"):
        # Folders by relative path; files (kustomize loads them only from within the root) are copied below.
        data[key] = [
            p if (overlay / p).is_file() else os.path.relpath((overlay / p).resolve(), folder)
            for p in data.get(key, [])
        ]
    data["components"] += [os.path.relpath(c, folder) for c in components]
    for path in overlay.iterdir():
        if path.name != "kustomization.yaml":
            shutil.copy(path, folder / path.name)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def render(name: str) -> list[Obj]:
    """The objects ``kubectl kustomize deploy/k8s/<name>`` prints (rendered once per session; deep copies).

    ``overlays/X+components/Y`` is overlay X with component Y added to its kustomization.
    """
    import copy

    return copy.deepcopy(list(_render(name)))


def _script(name: str) -> ModuleType:
    """A module of scripts/ (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PIN_IMAGES = _script("pin_images")


def split_image(reference: str) -> tuple[str, str, str]:
    """An image reference's repository, tag and digest (``reg/x:1.0@sha256:…``; a missing part is ""), parsed
    as scripts/pin_images.py parses the references it pins."""
    parts: tuple[str, str, str] = _PIN_IMAGES.split_reference(reference)
    return parts


def load_yaml_documents(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[Obj], kind: str, name: str) -> Obj:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(docs: list[Obj], *kinds: str) -> list[Obj]:
    return [d for d in docs if d["kind"] in kinds]


def pod_templates(obj: Obj) -> list[Obj]:
    """The pod templates of a workload (one, or one per TFJob replica type)."""
    if obj["kind"] in WORKLOAD_KINDS:
        return [obj["spec"]["template"]]
    if obj["kind"] == "TFJob":
        return [r["template"] for r in obj["spec"]["tfReplicaSpecs"].values()]
    return []


def container(obj: Obj, name: str) -> Obj:
    for template in pod_templates(obj):
        for c in template["spec"]["containers"]:
            if c["name"] == name:
                return dict(c)
    raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']} has no container {name!r}")


def container_port(c: Obj, name: str) -> int:
    ports = {p["name"]: int(p["containerPort"]) for p in c.get("ports", [])}
    assert name in ports, f"container {c['name']} has no port named {name!r} ({sorted(ports)})"
    return ports[name]


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container_env(docs: list[Obj], c: Obj) -> dict[str, str]:
    """The environment a container starts with: its ConfigMaps (envFrom), then literal env values.

    ``valueFrom`` entries are left out, except CPU ``resourceFieldRef`` ones, which get the value kubelet
    would give (the limit, rounded up to whole cores).
    """
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is not None:
            env.update({k: str(v) for k, v in find(docs, "ConfigMap", ref["name"]).get("data", {}).items()})
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "resourceFieldRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["resourceFieldRef"]
            kind, _, resource = ref["resource"].partition(".")
            assert resource == "cpu", f"unexpected resourceFieldRef {ref}"
            env[item["name"]] = str(cpu_cores_ceil(c["resources"][kind]["cpu"]))
    return env


def pre_stop_seconds(c: Obj) -> float:
    """How long a container's preStop hook delays SIGTERM: ``exec: [sleep, N]`` or the ``sleep`` action; 0 without."""
    hook = c.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, f"{c['name']}: a preStop the tests cannot time: {command}"
    return float(command[1])


def cpu_cores_ceil(quantity: str | int | float) -> int:
    text = str(quantity)
    cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, -int(-cores // 1))


# ------------------------------------------------------------------------------------ service contracts


def service_available(service: Service) -> bool:
    try:
        return importlib.util.find_spec(service.module) is not None
    except ModuleNotFoundError:
        return False


def require(service: Service) -> None:
    if not service_available(service):
        pytest.skip(f"{service.module} is not built yet")


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly the TFIC_* variables of ``env`` while the block runs (the CLI reads them for its defaults)."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("TFIC_")]:
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.startswith("TFIC_")})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_cli(argv: list[str], env: Mapping[str, str]) -> argparse.Namespace:
    """``tfic ARGV`` parsed as the container would parse it, with ``env`` as its TFIC_* environment: the parsed
    flags, and for ``tfic serve NAME`` every setting of the service as the service resolves it (flag, else
    variable, else default) without building the settings object (whose checks look at this machine's
    folders)."""
    from tfic.settings import resolve
    from tfic_cli.main import build_parser
    from tfic_cli.serve import SERVICES

    tfic_env = {k: v for k, v in env.items() if k.startswith("TFIC_")}
    with environment(env):
        args = build_parser().parse_args(argv)
    if getattr(args, "command", None) == "serve":
        settings = SERVICES[args.service][0]().SETTINGS
        for declared, value, _ in resolve(settings, args, tfic_env):
            setattr(args, declared.dest, value)
    return args


_ENV_IN_HELP = re.compile(r"\[env (TFIC_[A-Z0-9_]+)\]")


def cli_env_vars(service: Service) -> set[str]:
    """Every TFIC_* variable ``tfic serve <service>`` reads, from its flags' help (``[env NAME]``)."""
    from tfic_cli.main import build_parser

    with environment({}):
        parser = build_parser()
    names = set(_ENV_IN_HELP.findall(parser.format_help()))
    serve = _subparser(parser, "serve")
    for action in _subparser(serve, service.name)._actions:
        names.update(_ENV_IN_HELP.findall(action.help or ""))
    return names


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise AssertionError(f"no subcommand {name!r}")


def _import_attr(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    module: ModuleType = importlib.import_module(module_name)
    return getattr(module, attr)


def exported_metrics(service: Service) -> dict[str, frozenset[str]]:
    """Every series name the service's metrics registry can export → its label names.

    Counters appear as ``<name>_total``, histograms as ``_bucket`` (with ``le``), ``_sum`` and ``_count``.
    Reads the registry's name table (prometheus_client's ``_names_to_collectors``), because labelled
    metrics without children export no samples yet.
    """
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    _import_attr(service.metrics)(registry=registry)
    names: dict[str, frozenset[str]] = {}
    for series, collector in registry._names_to_collectors.items():
        labels = frozenset(getattr(collector, "_labelnames", ()))
        names[series] = labels | {"le"} if series.endswith("_bucket") else labels
    return names


def all_exported_metrics() -> dict[str, frozenset[str]]:
    """The union over the services whose packages exist."""
    merged: dict[str, frozenset[str]] = {}
    for service in SERVICES:
        module = service.metrics.partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            merged.update(exported_metrics(service))
    return merged


_METRIC = re.compile(r"\btfic_[a-z0-9_]+\b")


def metric_names_in(text: str) -> set[str]:
    return set(_METRIC.findall(text))


# ------------------------------------------------------------------------------------------ Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    parent: Stage | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    expose: set[int] = field(default_factory=set)
    healthcheck: str | None = None
    copies: list[list[str]] = field(default_factory=list)
    copies_from: list[tuple[str, list[str]]] = field(default_factory=list)  # (stage, [sources..., destination])
    runs: list[str] = field(default_factory=list)

    def ancestry(self) -> list[Stage]:
        """This stage and the stages it is built on, nearest first."""
        return [self, *(self.parent.ancestry() if self.parent else [])]

    def inherited(self, attr: str) -> object:
        value = getattr(self, attr)
        if value is None and self.parent is not None:
            return self.parent.inherited(attr)
        return value

    def all_env(self) -> dict[str, str]:
        return {**(self.parent.all_env() if self.parent else {}), **self.env}

    def all_expose(self) -> set[int]:
        return (self.parent.all_expose() if self.parent else set()) | self.expose


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, line
            base, name = m.group(1), m.group(2) or f"stage{len(stages)}"
            stage = Stage(name, base, parent=stages.get(base))
            stages[name] = stage
        elif stage is None:
            assert instruction == "ARG", line
        elif instruction == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        elif instruction == "CMD":
            stage.cmd = json.loads(rest)
        elif instruction == "USER":
            stage.user = rest.strip()
        elif instruction == "ENV":
            stage.env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
        elif instruction == "EXPOSE":
            stage.expose |= {int(p.split("/")[0]) for p in rest.split()}
        elif instruction == "HEALTHCHECK":
            stage.healthcheck = rest
        elif instruction == "RUN":
            stage.runs.append(rest)
        elif instruction == "COPY":
            args = [a for a in rest.split() if not a.startswith("--")]
            source_stage = re.search(r"--from=(\S+)", rest)
            if source_stage is None:
                stage.copies.append(args[:-1])
            else:
                stage.copies_from.append((source_stage.group(1), args))
    return stages
