"""``tfic serve inference|trainer|gateway``: each service's own flags, started from one CLI."""

from __future__ import annotations

import argparse
import importlib

SERVICES = {
    "inference": ("inference_svc.main", "the batching gRPC inference service (Classifier + TF Serving APIs)"),
    "trainer": ("trainer_svc.main", "the Trainer gRPC service (training jobs in worker processes)"),
    "gateway": ("gateway.main", "the HTTP gateway with SageMaker's contracts"),
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="run a tfic service", description="Run one of tfic's services.")
    which = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, (module_name, help_text) in SERVICES.items():
        module = importlib.import_module(module_name)
        p = which.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    importlib.import_module("trainer_svc.client_cli").register(sub)
    importlib.import_module("tfic.cli.up").register(sub)
