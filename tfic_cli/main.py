"""The ``tfic`` command line: train, evaluate, predict, convert data, and run the services.

Every command lives in its own module, imported only when that command runs (or when the whole
parser is built for ``--help`` texts and tests): each service installs alone from its extra
(``pip install 'tfic[gateway]'``), and ``tfic serve gateway`` must start without TensorFlow.
``tfic --help`` lists every command from the table below without importing any of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tfic import logs
from tfic.argparsing import ArgumentParser
from tfic.errors import InvalidArgument, TficError, status_for
from tfic.settings import add_arguments, from_args
from tfic_cli.extras import MissingExtra, missing_extra

# The services log at info; a command run by hand shows warnings only unless asked.
LOG_DEFAULTS = {"log_level": "warning"}


@dataclass(frozen=True)
class Command:
    """One ``tfic`` command: where its arguments are declared and which extra brings its dependencies.

    ``configure`` is ``module:function``, called as ``function(parser, argv)`` with the words after the
    command name (``None`` when the whole parser is built), so a command with sub-commands of its own
    (``serve``) can load only the one asked for.
    """

    help: str
    configure: str
    extra: str

    def load(self, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
        module_name, _, function = self.configure.partition(":")
        getattr(importlib.import_module(module_name), function)(parser, argv)


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a classifier and publish a new model version", "tfic_cli.models:configure_train", "trainer"
    ),
    "evaluate": Command("evaluate a model version on labelled data", "tfic_cli.models:configure_evaluate", "trainer"),
    "predict": Command(
        "classify images with a local model version, an inference server or a gateway",
        "tfic_cli.models:configure_predict",
        "client",  # local prediction (a model path) needs the trainer extra: its handler says so
    ),
    "export": Command(
        "convert a model version for the edge: TensorFlow Lite (float, float16, int8) or ONNX",
        "tfic_cli.export:configure",
        "trainer",
    ),
    "backbones": Command(
        "list pretrained backbones, or publish one's ImageNet classifier",
        "tfic_cli.models:configure_backbones",
        "trainer",
    ),
    "models": Command(
        "promote, roll back and list a model's fleet-wide version labels (stable, canary)",
        "tfic_cli.rollout:configure",
        "trainer",  # promote validates with TensorFlow; labels/rollback/unlabel need only the core
    ),
    "data": Command(
        "prepare and inspect datasets (.lst, .rec, folders, TFRecord)", "tfic_cli.data:configure", "trainer"
    ),
    # Each service names its own extra (gateway, inference, trainer): see tfic_cli.serve.
    "serve": Command("run a tfic service", "tfic_cli.serve:configure", "gateway,inference,trainer"),
    "jobs": Command("submit and follow training jobs on a Trainer service", "tfic_cli.jobs:configure", "client"),
    "up": Command(
        "run trainer, inference service and gateway locally (and the demo with --demo)",
        "tfic_cli.up:configure",
        "demo",
    ),
}


def _global_options(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, logs.LogSettings, defaults=LOG_DEFAULTS)


def selected_command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The command named in ``argv`` and the words after it, parsed as the full parser would."""
    pre = argparse.ArgumentParser(add_help=False)
    _global_options(pre)
    pre.add_argument("command", nargs="?")
    pre.add_argument("rest", nargs=argparse.REMAINDER)
    known, _ = pre.parse_known_args(list(argv))
    command = known.command if known.command in COMMANDS else None
    return command, list(known.rest or [])


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``tfic`` parser. With ``argv``, only the command it names is loaded; without, every command."""
    parser = ArgumentParser(
        prog="tfic",
        description="tfic: train image classifiers and serve them (SageMaker-compatible, TensorFlow Serving layout).",
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen, rest = selected_command(argv) if argv is not None else (None, [])
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if argv is None:
            command.load(p, None)
        elif name == chosen:
            try:
                command.load(p, rest)
            except ModuleNotFoundError as exc:
                error = missing_extra(command.extra, exc)
                if error is None:
                    raise
                raise error from exc
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(words)
    except MissingExtra as exc:
        print(f"tfic {selected_command(words)[0]}: error: {exc.message}", file=sys.stderr)
        return 1
    args = parser.parse_args(words)
    try:
        log = from_args(logs.LogSettings, args, defaults=LOG_DEFAULTS)
        logs.configure(log.level, log.format)
        code: int = args.handler(args)
        return code
    except TficError as exc:
        print(f"tfic {args.command}: error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidArgument) or status_for(exc).http_status < 500 else 1
    except ModuleNotFoundError as exc:
        error = missing_extra(getattr(args, "extra", COMMANDS[args.command].extra), exc)
        if error is None:
            raise
        print(f"tfic {args.command}: error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tfic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
