"""``python -m gateway|inference_svc|trainer_svc``: a service's own entry point, built like ``tfic serve``.

The parser holds the log settings and the service's settings (both declared through :mod:`tfic.settings`);
the objects are built once here, logging is configured, and the service runs. A bad setting (flag or
variable) exits 2, as argparse does for a malformed flag.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from tfic import logs
from tfic.argparsing import ArgumentParser
from tfic.errors import TficError
from tfic.settings import add_arguments, from_args


def service_main(
    prog: str,
    description: str,
    settings: type,
    run: Callable[[Any], int],
    argv: Sequence[str] | None = None,
) -> int:
    parser = ArgumentParser(prog=prog, description=description)
    add_arguments(parser, logs.LogSettings)
    add_arguments(parser, settings)
    args = parser.parse_args(argv)
    try:
        log = from_args(logs.LogSettings, args)
        logs.configure(log.level, log.format)
        return run(from_args(settings, args))
    except TficError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
