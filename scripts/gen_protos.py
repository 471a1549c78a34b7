"""Generate Python code (with .pyi stubs) from protos/tfic/v1/*.proto into tfic/v1/.

The ``_pb2_grpc`` stubs come from mypy-protobuf's ``protoc-gen-mypy_grpc`` (a build requirement and part
of the dev extra): without them every servicer base class and ``add_*_to_server`` is ``Any`` to mypy.

The proto package ``tfic.v1`` matches the Python package, so generated imports need no
rewriting. Generated files are not committed; ``make`` and ``pip install`` run this.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _plugin(name: str) -> str:
    # pip's isolated build environment and a venv both put the plugin beside their interpreter; PATH
    # covers an installed mypy-protobuf anywhere else.
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install mypy-protobuf (pip install -e '.[dev]')")
    return found


def generate(root: Path = ROOT) -> None:
    import grpc_tools
    from grpc_tools import protoc

    proto_dir = root / "protos"
    out = root
    sources = sorted(str(p.relative_to(proto_dir)) for p in (proto_dir / "tfic" / "v1").glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out / "tfic" / "v1" / "__init__.py"
    init.write_text('"""Generated from protos/tfic/v1 by scripts/gen_protos.py; do not edit."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
