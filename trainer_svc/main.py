"""``tfic serve trainer`` / ``python -m trainer_svc``: the Trainer gRPC service's flags and entry point."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfic.errors import InvalidArgument, TficError
from tfic.settings import add_flag
from trainer_svc.service.settings import TrainerSettings

DATA_ROOTS_ENV = "TFIC_TRAINER_DATA_ROOTS"
AUTH_TOKEN_ENV = "TFIC_TRAINER_AUTH_TOKEN"


def _roots(text: str) -> list[Path]:
    return [Path(p.strip()) for p in text.split(",") if p.strip()]


class _DataRoots(argparse.Action):
    """Repeatable ``--data-root``; the flags replace the environment's list rather than extend it."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        given = getattr(namespace, "_data_roots_from_flags", False)
        current = list(getattr(namespace, self.dest) or []) if given else []
        namespace._data_roots_from_flags = True
        setattr(namespace, self.dest, [*current, *values])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network")
    add_flag(net, "--host", default="0.0.0.0", env="TFIC_TRAINER_HOST", help="address to listen on")
    add_flag(net, "--port", type=int, default=8600, env="TFIC_TRAINER_PORT", help="gRPC port (0: any free port)")
    add_flag(
        net, "--metrics-port", type=int, default=9101, env="TFIC_TRAINER_METRICS_PORT",
        help="Prometheus /metrics port (0: any free port, -1: off)",
    )  # fmt: skip
    add_flag(net, "--tls-cert", type=Path, env="TFIC_TRAINER_TLS_CERT", help="PEM certificate chain: serve TLS")
    add_flag(net, "--tls-key", type=Path, env="TFIC_TRAINER_TLS_KEY", help="PEM private key for --tls-cert")
    net.add_argument(
        "--auth-token",
        help="require 'authorization: Bearer TOKEN' on every RPC but health checks (prefer the env var) "
        f"[env {AUTH_TOKEN_ENV}]",
    )
    net.add_argument("--port-file", type=Path, help="write the bound port to this file once serving (with --port 0)")
    jobs = parser.add_argument_group("jobs")
    add_flag(
        jobs, "--state-dir", type=Path, default=Path("tfic-trainer-state"), env="TFIC_TRAINER_STATE_DIR",
        help="job database (trainer.db) and per-job work folders",
    )  # fmt: skip
    add_flag(
        jobs, "--model-base-path", type=Path, default=Path("models"), env="TFIC_MODEL_BASE_PATH",
        help="model repository that completed jobs publish versions to",
    )  # fmt: skip
    add_flag(
        jobs, "--data-root", type=_roots, default=None, env=DATA_ROOTS_ENV, action=_DataRoots, dest="data_roots",
        metavar="DIR",
        help="a folder jobs may read local data from (repeatable; the env var is comma-separated)",
    )  # fmt: skip
    add_flag(
        jobs, "--max-concurrent-jobs", type=int, default=1, env="TFIC_TRAINER_MAX_CONCURRENT_JOBS",
        help="worker processes at once; other jobs wait Pending (0 accepts jobs but starts none)",
    )  # fmt: skip
    add_flag(
        jobs, "--max-attempts", type=int, default=3, env="TFIC_TRAINER_MAX_ATTEMPTS",
        help="worker runs per job, counting resumes after server restarts",
    )  # fmt: skip
    add_flag(
        jobs, "--stop-grace-seconds", type=float, default=30.0, env="TFIC_TRAINER_STOP_GRACE_SECONDS",
        help="how long a stopped worker may take to stop at a batch boundary before it is killed",
    )  # fmt: skip
    add_flag(
        jobs, "--s3-endpoint-url", env="TFIC_S3_ENDPOINT_URL",
        help="S3-compatible endpoint for s3:// channels (credentials: the standard AWS_* variables)",
    )  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> TrainerSettings:
    if args.max_concurrent_jobs < 0:
        raise InvalidArgument("--max-concurrent-jobs must be 0 or more")
    if args.max_attempts < 1:
        raise InvalidArgument("--max-attempts must be at least 1")
    if args.stop_grace_seconds < 0:
        raise InvalidArgument("--stop-grace-seconds must not be negative")
    roots = tuple(Path(p) for p in args.data_roots or ())
    for root in roots:
        if not root.is_dir():
            raise InvalidArgument(f"--data-root {root} is not a folder")
    return TrainerSettings(
        state_dir=args.state_dir.resolve(),
        model_base_path=args.model_base_path.resolve(),
        data_roots=tuple(r.resolve() for r in roots),
        host=args.host,
        port=args.port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        max_concurrent_jobs=args.max_concurrent_jobs,
        max_attempts=args.max_attempts,
        stop_grace_seconds=args.stop_grace_seconds,
        s3_endpoint_url=args.s3_endpoint_url or None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth_token=args.auth_token or os.environ.get(AUTH_TOKEN_ENV) or None,
        port_file=args.port_file,
    )


def run(args: argparse.Namespace) -> int:
    from trainer_svc.service.server import serve

    asyncio.run(serve(settings_from_args(args)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from tfic import logs

    parser = argparse.ArgumentParser(prog="python -m trainer_svc", description="The tfic Trainer gRPC service.")
    parser.add_argument("--log-level", default=os.environ.get("TFIC_LOG_LEVEL", "info"), help="[env TFIC_LOG_LEVEL]")
    parser.add_argument("--log-format", choices=("text", "json"), default=os.environ.get("TFIC_LOG_FORMAT", "text"))
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return run(args)
    except TficError as exc:
        print(f"trainer: error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
