"""``tfic jobs submit|get|list|stop|watch``: a command-line client of the Trainer service."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import grpc
from google.protobuf.json_format import MessageToDict

from tfic import errors
from tfic.grpc_errors import UpstreamError, exception_from_rpc
from tfic.settings import add_arguments, from_args, setting
from tfic.v1 import trainer_pb2 as pb
from tfic.v1 import trainer_pb2_grpc

STATE_NAMES = {
    "Pending": pb.JOB_STATE_PENDING,
    "InProgress": pb.JOB_STATE_IN_PROGRESS,
    "Completed": pb.JOB_STATE_COMPLETED,
    "Failed": pb.JOB_STATE_FAILED,
    "Stopping": pb.JOB_STATE_STOPPING,
    "Stopped": pb.JOB_STATE_STOPPED,
}
STATE_OF = {v: k for k, v in STATE_NAMES.items()}
TERMINAL = (pb.JOB_STATE_COMPLETED, pb.JOB_STATE_FAILED, pb.JOB_STATE_STOPPED)
# trainer_svc.data.loader's format names (FORMATS) → the channel's enum; --format also takes their aliases.
FORMATS = {"folders": pb.DATA_FORMAT_FOLDER, "lst": pb.DATA_FORMAT_LST, "rec": pb.DATA_FORMAT_RECORDIO}
FORMATS["tfrecord"] = pb.DATA_FORMAT_TFRECORD
FORMATS["manifest"] = pb.DATA_FORMAT_MANIFEST


@dataclass(frozen=True)
class TrainerConnection:
    """Where ``tfic jobs`` finds the Trainer service, and how it proves who it is."""

    ENV_PREFIX: ClassVar[str] = "TFIC_TRAINER_"

    server: str = setting("localhost:8600", "Trainer service HOST:PORT", env="TFIC_TRAINER_ADDRESS")
    tls: bool = setting(False, "connect with TLS")
    ca_cert: Path | None = setting(None, "PEM CA bundle for --tls (default: the system's)")
    auth_token: str | None = setting(None, "bearer token (prefer the variable: flags show in process lists)")


def configure(jobs: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    jobs.description = "Talk to `tfic serve trainer`."
    which = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)

    p = which.add_parser("submit", help="create a training job", description="Create a training job on the server.")
    _connection(p)
    p.add_argument("data", help="training data: a path under the server's data roots, or an s3:// URI")
    p.add_argument("--validation", help="validation data (default: a seeded stratified split of DATA)")
    from trainer_svc.data.loader import CLI_FORMATS

    p.add_argument("--format", choices=CLI_FORMATS, help="data format (default: inferred from the path)")
    p.add_argument("--image-root", help="folder that .lst paths are relative to (default: the .lst's folder)")
    p.add_argument("--validation-image-root", help="image root for a .lst validation channel")
    p.add_argument(
        "--attribute-names",
        help="an augmented manifest's image and label attributes, SageMaker's AttributeNames (e.g. source-ref,class)",
    )
    p.add_argument("--model-name", required=True, help="model name the new version is published under")
    p.add_argument("--name", help="job name (default: MODEL_NAME-<date>-<time>)")
    p.add_argument("--base-model", help="backbone name, or the path of a tfic model version (incremental training)")
    p.add_argument(
        "--promote",
        metavar="LABEL",
        help="once published, validate the new version and point this fleet label (canary, stable) at it",
    )
    p.add_argument("--hyperparameters", type=Path, help="JSON file of hyperparameters (SageMaker's format)")
    p.add_argument("--request-id", help="idempotency key: resubmitting with it returns the same job")
    p.add_argument("--wait", action="store_true", help="watch the job until it ends; exit 1 unless it completes")
    _hyperparameter_flags(p)
    p.set_defaults(handler=_submit)

    p = which.add_parser("get", help="show a job", description="Show one job (by id or name).")
    _connection(p)
    p.add_argument("job", help="job id or name")
    p.set_defaults(handler=_get)

    p = which.add_parser("list", help="list jobs, newest first", description="List jobs, newest first.")
    _connection(p)
    p.add_argument("--state", action="append", choices=list(STATE_NAMES), help="only jobs in this state (repeatable)")
    p.add_argument("--page-size", type=int, default=50, help="jobs per page")
    p.add_argument("--page-token", default="", help="next_page_token of a previous page")
    p.add_argument("--all", action="store_true", help="follow every page")
    p.set_defaults(handler=_list)

    p = which.add_parser("stop", help="stop a job", description="Stop a job: Stopping, then Stopped.")
    _connection(p)
    p.add_argument("job", help="job id or name")
    p.add_argument("--wait", action="store_true", help="wait until it has stopped")
    p.set_defaults(handler=_stop)

    p = which.add_parser(
        "watch", help="follow a job's events", description="Replay a job's events, then follow it until it ends."
    )
    _connection(p)
    p.add_argument("job", help="job id or name")
    p.set_defaults(handler=_watch)


def _connection(p: argparse.ArgumentParser) -> None:
    add_arguments(p, TrainerConnection)
    p.add_argument("--json", action="store_true", help="machine-readable output (JSON; JSON Lines for watch)")


def _hyperparameter_flags(p: argparse.ArgumentParser) -> None:
    """The same ``--name VALUE`` hyperparameter flags as ``tfic train`` (read by ``hyperparameter_values``)."""
    from tfic_cli.models import add_hyperparameter_flags

    add_hyperparameter_flags(p)


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        connection = from_args(TrainerConnection, args)
        self.address = connection.server
        token = connection.auth_token
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if connection.tls:
            roots = connection.ca_cert.read_bytes() if connection.ca_cert else None
            self.channel = grpc.secure_channel(self.address, grpc.ssl_channel_credentials(roots))
        else:
            self.channel = grpc.insecure_channel(self.address)
        self.stub = trainer_pb2_grpc.TrainerStub(self.channel)

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, metadata=self.metadata, timeout=60)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def stream(self, method: Callable[..., Any], request: Any) -> Iterator[Any]:
        try:
            yield from method(request, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> errors.TficError:
        """The trainer's error as its own class (:func:`tfic.grpc_errors.exception_from_rpc`)."""
        error = exception_from_rpc(exc, service=f"the trainer at {self.address}")
        upstream = error.details.get("upstream")
        if upstream and not isinstance(error, UpstreamError):
            # gRPC's own words ("connection refused" …) help whoever runs the command; a gateway hides them.
            error.message = f"{error.message}: {upstream}"
        return error

    def close(self) -> None:
        self.channel.close()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _submit(args: argparse.Namespace) -> int:
    from tfic_cli.models import hyperparameter_values

    values = hyperparameter_values(args)
    channels = [pb.InputChannel(name="train", uri=args.data, image_root=args.image_root or "")]
    if args.validation:
        channels.append(
            pb.InputChannel(name="validation", uri=args.validation, image_root=args.validation_image_root or "")
        )
    for channel in channels:
        if args.format:
            from trainer_svc.data.loader import canonical_format

            channel.format = FORMATS[canonical_format(args.format)]
        if args.attribute_names:
            channel.attribute_names.extend(n.strip() for n in args.attribute_names.split(",") if n.strip())
    spec = pb.TrainingJobSpec(
        channels=channels,
        hyperparameters=pb.Hyperparameters(extra={k: _text(v) for k, v in values.items()}),
        base_model=args.base_model or "",
        model_name=args.model_name,
        promote=args.promote or "",
    )
    name = args.name or f"{args.model_name}-{time.strftime('%Y%m%d-%H%M%S')}".replace("_", "-").replace(".", "-")
    client = _Client(args)
    try:
        job = client.call(
            client.stub.CreateTrainingJob,
            pb.CreateTrainingJobRequest(name=name, spec=spec, request_id=args.request_id or ""),
        )
        if not args.wait:
            _print_job(job, args.json)
            return 0
        if not args.json:
            print(f"submitted {job.name} ({job.job_id})", file=sys.stderr)
        return _follow(client, job.job_id, args.json)
    finally:
        client.close()


def _get(args: argparse.Namespace) -> int:
    client = _Client(args)
    try:
        _print_job(client.call(client.stub.GetTrainingJob, pb.GetTrainingJobRequest(job=args.job)), args.json)
    finally:
        client.close()
    return 0


def _list(args: argparse.Namespace) -> int:
    client = _Client(args)
    token = args.page_token
    states = [STATE_NAMES[s] for s in args.state or ()]
    try:
        while True:
            request = pb.ListTrainingJobsRequest(states=states, page_size=args.page_size, page_token=token)
            page = client.call(client.stub.ListTrainingJobs, request)
            for job in page.jobs:
                if args.json:
                    print(json.dumps(_dict(job)))
                else:
                    print(f"{job.name:<32} {STATE_OF.get(job.state, '?'):<11} {_created(job):<20} {job.job_id}")
            token = page.next_page_token
            if not token or not args.all:
                break
        if token and not args.json:
            print(f"more: --page-token {token}", file=sys.stderr)
    finally:
        client.close()
    return 0


def _stop(args: argparse.Namespace) -> int:
    client = _Client(args)
    try:
        job = client.call(client.stub.StopTrainingJob, pb.StopTrainingJobRequest(job=args.job))
        if args.wait:
            return _follow(client, job.job_id, args.json, expect=pb.JOB_STATE_STOPPED)
        _print_job(job, args.json)
    finally:
        client.close()
    return 0


def _watch(args: argparse.Namespace) -> int:
    client = _Client(args)
    try:
        return _follow(client, args.job, args.json)
    finally:
        client.close()


def _follow(client: _Client, job: str, as_json: bool, expect: int = pb.JOB_STATE_COMPLETED) -> int:
    """Print the job's events (a bar that advances per epoch on a terminal) and its final state."""
    from tqdm import tqdm

    bar: Any = None
    interactive = sys.stderr.isatty() and not as_json
    for event in client.stream(client.stub.WatchTrainingJob, pb.WatchTrainingJobRequest(job=job)):
        kind = event.WhichOneof("event")
        if as_json:
            print(json.dumps(_dict(event)), flush=True)
        elif kind == "epoch":
            m = event.epoch
            shown = {
                k: f"{v:.4f}"
                for k, v in sorted(m.values.items())
                if k in ("loss", "accuracy", "val_loss", "val_accuracy")
            }
            if interactive:
                if bar is None:
                    bar = tqdm(total=m.epochs, initial=m.epoch - 1, desc="training", unit="epoch", file=sys.stderr)
                bar.update(1)
                bar.set_postfix(shown)
            else:
                metrics = " ".join(f"{k}={v}" for k, v in shown.items())
                phase = f" [{m.phase}]" if m.phase else ""
                print(f"epoch {m.epoch}/{m.epochs}{phase} {metrics} ({m.images_per_second:.0f} img/s)", file=sys.stderr)
        else:
            if bar is not None:
                bar.close()
                bar = None
            print(_describe(event), file=sys.stderr)
    if bar is not None:
        bar.close()
    final = client.call(client.stub.GetTrainingJob, pb.GetTrainingJobRequest(job=job))
    _print_job(final, as_json)
    return 0 if final.state == expect else 1


def _describe(event: pb.TrainingEvent) -> str:
    kind = event.WhichOneof("event")
    if kind == "state":
        reason = f": {event.failure_reason}" if event.failure_reason else ""
        return f"state: {STATE_OF.get(event.state, '?')}{reason}"
    if kind == "model":
        return f"published {event.model.model_name} version {event.model.version} at {event.model.path}"
    return str(event.message)


def _created(job: pb.TrainingJob) -> str:
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.create_time.seconds)) if job.create_time.seconds else ""
    )


def _dict(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return data


def _print_job(job: pb.TrainingJob, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_dict(job)))
        return
    lines = [
        f"job:      {job.name} ({job.job_id})",
        f"state:    {STATE_OF.get(job.state, '?')}" + (f": {job.failure_reason}" if job.failure_reason else ""),
        f"attempt:  {job.attempt}",
        f"created:  {_created(job)}",
    ]
    if job.tensorboard_dir:
        lines.append(f"tensorboard: {job.tensorboard_dir}  (tensorboard --logdir {job.tensorboard_dir})")
    if job.HasField("last_metrics"):
        m = job.last_metrics
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(m.values.items()))
        lines.append(f"epoch:    {m.epoch}/{m.epochs} {metrics}")
    if job.HasField("output"):
        lines.append(f"model:    {job.output.model_name} version {job.output.version} at {job.output.path}")
        if job.output.metrics:
            final = " ".join(f"{k}={v:.4f}" for k, v in sorted(job.output.metrics.items()))
            lines.append(f"final:    {final}")
    print("\n".join(lines))
