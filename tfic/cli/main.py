"""The ``tfic`` command line: train, evaluate, predict, convert data, and run the services."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tfic.errors import InvalidArgument, TficError, status_for


def build_parser() -> argparse.ArgumentParser:
    from tfic.cli import data, models, services

    parser = argparse.ArgumentParser(
        prog="tfic",
        description="tfic: train image classifiers and serve them (SageMaker-compatible, TensorFlow Serving layout).",
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("TFIC_LOG_LEVEL", "warning"), help="log level [env TFIC_LOG_LEVEL]"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("TFIC_LOG_FORMAT", "text"),
        help="log format [env TFIC_LOG_FORMAT]",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    models.register(sub)
    data.register(sub)
    services.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    from tfic import logs

    logs.configure(args.log_level, args.log_format)
    try:
        code: int = args.handler(args)
        return code
    except TficError as exc:
        print(f"tfic {args.command}: error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidArgument) or status_for(exc).http_status < 500 else 1
    except KeyboardInterrupt:
        print(f"tfic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
