"""``make demo``: the main job on the embedded default, through the three services.

Equivalent to ``tfic up --demo --exit --workdir demo-output``: start the Trainer, the inference
service and the gateway; train the digits through the Trainer (full training, then transfer
learning); wait for the inference service to hot-load the version; evaluate; classify sample
images through the gateway with each Accept type and through gRPC; stop everything.
"""

from __future__ import annotations

import os
import sys

from tfic.cli.main import main as tfic


def main(argv: list[str] | None = None) -> int:
    workdir = os.environ.get("TFIC_DEMO_DIR", "demo-output")
    return tfic(["up", "--demo", "--exit", "--workdir", workdir, *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
