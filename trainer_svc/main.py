"""``tfic serve trainer`` / ``python -m trainer_svc``: the Trainer gRPC service's entry point."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from trainer_svc.service.settings import TrainerSettings

SETTINGS = TrainerSettings  # what `tfic serve trainer` and `python -m trainer_svc` build and pass to run()


def run(settings: TrainerSettings) -> int:
    from trainer_svc.service.server import serve

    asyncio.run(serve(settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from tfic.entry import service_main

    return service_main("python -m trainer_svc", "The tfic Trainer gRPC service.", SETTINGS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
