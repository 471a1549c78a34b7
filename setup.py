"""Generate the protobuf modules whenever setuptools builds the package (pip install .)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

GENERATED_PACKAGES = ("tfic.v1",)


class BuildWithProtos(build_py):  # type: ignore[misc]  # setuptools.command has no type information
    def run(self) -> None:
        root = Path(__file__).resolve().parent
        spec = importlib.util.spec_from_file_location("gen_protos", root / "scripts" / "gen_protos.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate(root)
        # setuptools listed the packages before the generated ones existed: from a clean checkout (a fresh
        # clone, the image build's context, which leaves tfic/v1/ out) tfic.v1 would be missing from the
        # wheel, and every service fails at its first `from tfic.v1 import ...`.
        for package in GENERATED_PACKAGES:
            if package not in self.packages:
                self.packages.append(package)
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
