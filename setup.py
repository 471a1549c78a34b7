"""Generate the protobuf modules whenever setuptools builds the package (pip install .)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithProtos(build_py):
    def run(self) -> None:
        root = Path(__file__).resolve().parent
        spec = importlib.util.spec_from_file_location("gen_protos", root / "scripts" / "gen_protos.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate(root)
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
