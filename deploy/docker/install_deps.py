"""Install tfic's runtime dependencies (pinned by constraints.txt) before the source is copied in.

The image build runs this in its own layer, so editing tfic's code does not reinstall TensorFlow.
``--gpu`` asks for ``tensorflow[and-cuda]`` (the CUDA and cuDNN libraries as wheels) and adds the
GPU constraints file that pins them. ``--print`` shows the pip command instead of running it.

    python deploy/docker/install_deps.py [--gpu] [--print]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU_CONSTRAINTS = Path(__file__).resolve().parent / "constraints-gpu.txt"
_TENSORFLOW = re.compile(r"^tensorflow(?=\s*[=<>!~;]|$)")


def runtime_requirements(pyproject: Path, *, gpu: bool = False) -> list[str]:
    """The ``[project] dependencies`` of ``pyproject``; with ``gpu``, TensorFlow gets its ``and-cuda`` extra."""
    with pyproject.open("rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    if gpu:
        deps = [_TENSORFLOW.sub("tensorflow[and-cuda]", d) for d in deps]
    return deps


def pip_command(root: Path, *, gpu: bool = False) -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-c", str(root / "constraints.txt")]
    if gpu:
        command += ["-c", str(GPU_CONSTRAINTS)]
    return command + runtime_requirements(root / "pyproject.toml", gpu=gpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding pyproject.toml and constraints.txt")
    parser.add_argument("--gpu", action="store_true", help="tensorflow[and-cuda] and the GPU constraints")
    parser.add_argument("--print", action="store_true", help="print the pip command instead of running it")
    args = parser.parse_args(argv)
    command = pip_command(args.root, gpu=args.gpu)
    if args.print:
        print(" ".join(command))
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main())
