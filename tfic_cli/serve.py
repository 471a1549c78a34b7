"""``tfic serve inference|trainer|gateway``: each service's own flags, started from one CLI.

Only the service asked for is imported, so an image holding one service's extra runs it without
the others' dependencies (the gateway's image has no TensorFlow).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from tfic_cli.extras import missing_extra

# name → (entry-point module with add_arguments/run, help). The extra of each is its name.
SERVICES = {
    "inference": ("inference_svc.main", "the batching gRPC inference service (Classifier + TF Serving APIs)"),
    "trainer": ("trainer_svc.main", "the Trainer gRPC service (training jobs in worker processes)"),
    "gateway": ("gateway.main", "the HTTP gateway with SageMaker's contracts"),
}


def configure(serve: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    serve.description = "Run one of tfic's services."
    which = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    chosen = argv[0] if argv else None
    for name, (module_name, help_text) in SERVICES.items():
        p = which.add_parser(name, help=help_text, description=help_text)
        if argv is not None and name != chosen:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            error = missing_extra(name, exc)
            if error is None:
                raise
            raise error from exc
        module.add_arguments(p)
        p.set_defaults(handler=module.run, extra=name)
