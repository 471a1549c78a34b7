"""Entry point: ``tfic serve inference`` (the lead's CLI) and ``python -m inference_svc``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from inference_svc.settings import Settings, with_batching_config

SETTINGS = Settings  # what `tfic serve inference` and `python -m inference_svc` build and pass to run()


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; logging is configured by the caller."""
    settings = with_batching_config(settings)  # validated before TensorFlow is imported
    from inference_svc.server import serve

    if settings.event_loop == "uvloop":
        # grpc.aio runs on any asyncio loop; uvloop's cheaper callbacks and thread wake-ups
        # (every decode and batch result comes back through one) cost less CPU per request.
        import uvloop

        return uvloop.run(serve(settings))
    return asyncio.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    from tfic.entry import service_main

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # for TensorFlow's C++ logging, before it loads
    return service_main("python -m inference_svc", "tfic's batching gRPC inference service", SETTINGS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
