"""``python -m gateway``: the same as ``tfic serve gateway``."""

from __future__ import annotations

import argparse
import os
import sys

from gateway.main import add_arguments, run
from tfic import logs
from tfic.errors import TficError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="tfic's HTTP gateway")
    parser.add_argument("--log-level", default=os.environ.get("TFIC_LOG_LEVEL", "info"), help="[env TFIC_LOG_LEVEL]")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("TFIC_LOG_FORMAT", "text"),
        help="[env TFIC_LOG_FORMAT]",
    )
    try:
        add_arguments(parser)
        args = parser.parse_args()
        logs.configure(args.log_level, args.log_format)
        return run(args)
    except TficError as exc:
        print(f"gateway: error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
