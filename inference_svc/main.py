"""Entry point: ``tfic serve inference`` (the lead's CLI) and ``python -m inference_svc``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from inference_svc import flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every inference setting as a flag (defaults from ``TFIC_`` environment variables)."""
    flags.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; logging is configured by the caller."""
    settings = flags.from_args(args)  # validate before importing TensorFlow
    from inference_svc.server import serve

    if settings.event_loop == "uvloop":
        # grpc.aio runs on any asyncio loop; uvloop's cheaper callbacks and thread wake-ups
        # (every decode and batch result comes back through one) cost less CPU per request.
        import uvloop

        return uvloop.run(serve(settings))
    return asyncio.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        prog="python -m inference_svc", description="tfic's batching gRPC inference service"
    )
    parser.add_argument("--log-level", default=os.environ.get("TFIC_LOG_LEVEL", "info"), help="[env TFIC_LOG_LEVEL]")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("TFIC_LOG_FORMAT", "text"),
        help="[env TFIC_LOG_FORMAT]",
    )
    from tfic import logs
    from tfic.errors import TficError

    try:
        add_arguments(parser)  # reads the TFIC_ variables: a malformed one is reported, not a traceback
        args = parser.parse_args(argv)
        logs.configure(args.log_level, args.log_format)
        return run(args)
    except TficError as exc:
        print(f"inference_svc: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
