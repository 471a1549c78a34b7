"""``tfic serve inference|trainer|gateway``: each service's own flags, started from one CLI.

Only the service asked for is imported, so an image holding one service's extra runs it without
the others' dependencies (the gateway's image has no TensorFlow).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from types import ModuleType

from tfic import logs
from tfic.settings import add_arguments, from_args
from tfic_cli.extras import missing_extra
from tfic_cli.main import LOG_DEFAULTS


# Each service's entry point (SETTINGS, the class of its settings, and run(settings)), imported by a plain
# import statement inside a function: loaded only when that service runs, and still seen by the import
# contracts (lint-imports).
def _inference() -> ModuleType:
    from inference_svc import main

    return main


def _trainer() -> ModuleType:
    from trainer_svc import main

    return main


def _gateway() -> ModuleType:
    from gateway import main

    return main


# name → (entry point, help). The extra of each is its name.
SERVICES: dict[str, tuple[Callable[[], ModuleType], str]] = {
    "inference": (_inference, "the batching gRPC inference service (Classifier + TF Serving APIs)"),
    "trainer": (_trainer, "the Trainer gRPC service (training jobs in worker processes)"),
    "gateway": (_gateway, "the HTTP gateway with SageMaker's contracts"),
}


def configure(serve: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    serve.description = "Run one of tfic's services."
    which = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    chosen = argv[0] if argv else None
    for name, (entry_point, help_text) in SERVICES.items():
        p = which.add_parser(name, help=help_text, description=help_text)
        if argv is not None and name != chosen:
            continue
        try:
            module = entry_point()
        except ModuleNotFoundError as exc:
            error = missing_extra(name, exc)
            if error is None:
                raise
            raise error from exc
        # The log flags here too (the same declaration as `tfic --log-level`), since `tfic serve NAME --log-level`
        # is where a reader of a service's flags looks for them; given in both places, this one wins.
        add_arguments(p, logs.LogSettings, defaults=LOG_DEFAULTS)
        add_arguments(p, module.SETTINGS)
        p.set_defaults(handler=_Serve(module), extra=name)


class _Serve:
    """The handler of ``tfic serve NAME``: the settings built once, from the flags and the environment."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def __call__(self, args: argparse.Namespace) -> int:
        code: int = self.module.run(from_args(self.module.SETTINGS, args))
        return code
