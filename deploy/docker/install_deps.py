"""Install one tfic service's dependencies (pinned by constraints.txt) before the source is copied in.

The image build runs this in its own layer, so editing tfic's code does not reinstall TensorFlow.
It installs the ``[project] dependencies`` of pyproject.toml (the core, the protos, the CLI) and the
extra named by ``--extra`` (``gateway``, ``inference``, ``trainer``...), following the extras that
extra names (``tfic[client]``), so each image carries only its own service's packages. ``--gpu``
asks for ``tensorflow[and-cuda]`` (the CUDA and cuDNN libraries as wheels) and adds the GPU
constraints file that pins them. ``--print`` shows the pip command instead of running it.

    python deploy/docker/install_deps.py --extra SERVICE [--gpu] [--print]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GPU_CONSTRAINTS = Path(__file__).resolve().parent / "constraints-gpu.txt"
_TENSORFLOW = re.compile(r"^tensorflow(?=\s*[=<>!~;]|$)")
# A requirement on the project itself with extras, e.g. "tfic[gateway,client]".
_SELF = re.compile(r"^\s*(?P<name>[A-Za-z0-9._-]+)\s*\[(?P<extras>[^\]]+)\]\s*$")


def _project(pyproject: Path) -> dict[str, Any]:
    with pyproject.open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(pyproject: Path, extras: Sequence[str] = (), *, gpu: bool = False) -> list[str]:
    """The base dependencies plus those of ``extras`` (and of the extras they name), first occurrence kept.

    With ``gpu``, TensorFlow gets its ``and-cuda`` extra.
    """
    project = _project(pyproject)
    own = _normalise(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    deps: list[str] = []
    seen_extras: set[str] = set()

    def add(requirements: Sequence[str]) -> None:
        for requirement in requirements:
            match = _SELF.match(requirement)
            if match and _normalise(match["name"]) == own:
                visit([e.strip() for e in match["extras"].split(",")])
            elif requirement not in deps:
                deps.append(requirement)

    def visit(names: Sequence[str]) -> None:
        for name in names:
            if name not in optional:
                raise SystemExit(f"pyproject.toml has no extra {name!r} (it has: {', '.join(sorted(optional))})")
            if name not in seen_extras:
                seen_extras.add(name)
                add(optional[name])

    add(project["dependencies"])
    visit(extras)
    if gpu:
        deps = [_TENSORFLOW.sub("tensorflow[and-cuda]", d) for d in deps]
    return deps


def pip_command(root: Path, extras: Sequence[str] = (), *, gpu: bool = False) -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-c", str(root / "constraints.txt")]
    if gpu:
        command += ["-c", str(GPU_CONSTRAINTS)]
    return command + runtime_requirements(root / "pyproject.toml", extras, gpu=gpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding pyproject.toml and constraints.txt")
    parser.add_argument("--extra", action="append", default=[], help="the extra to install (repeatable), e.g. gateway")
    parser.add_argument("--gpu", action="store_true", help="tensorflow[and-cuda] and the GPU constraints")
    parser.add_argument("--print", action="store_true", help="print the pip command instead of running it")
    args = parser.parse_args(argv)
    command = pip_command(args.root, args.extra, gpu=args.gpu)
    if args.print:
        print(" ".join(command))
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main())
