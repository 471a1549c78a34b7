"""The Trainer service's settings: one frozen object, each field one setting (flag and ``TFIC_TRAINER_*``
variable, see :mod:`tfic.settings`), built once by ``trainer_svc.main``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tfic import grpc_security as security
from tfic.errors import InvalidArgument
from tfic.settings import check, setting
from trainer_svc.service.datapaths import DataRoots
from trainer_svc.service.jobs import TENSORBOARD_DIR
from trainer_svc.service.s3 import S3Options
from trainer_svc.service.validation import DataPolicy

NETWORK = "network"
JOBS = "jobs"


def _port_or_off(text: str) -> int | None:
    port = int(text)
    return None if port < 0 else port


@dataclass(frozen=True)
class TrainerSettings:
    ENV_PREFIX: ClassVar[str] = "TFIC_TRAINER_"

    host: str = setting("0.0.0.0", "address to listen on", group=NETWORK)
    port: int = setting(8600, "gRPC port (0: any free port)", minimum=0, maximum=65535, group=NETWORK)
    metrics_port: int | None = setting(
        9101,
        "Prometheus /metrics port (0: any free port, negative: off)",
        parse=_port_or_off,
        kind="int",
        maximum=65535,
        group=NETWORK,
    )
    state_dir: Path = setting(
        Path("tfic-trainer-state"), "job database (trainer.db) and per-job work folders", group=JOBS
    )
    model_base_path: Path = setting(
        Path("models"),
        "model repository that completed jobs publish versions to",
        env="TFIC_MODEL_BASE_PATH",
        group=JOBS,
    )
    data_roots: tuple[Path, ...] = setting(
        (),
        "a folder jobs may read local data from (repeatable; the variable is comma-separated)",
        flag="--data-root",
        env="TFIC_TRAINER_DATA_ROOTS",
        repeatable=True,
        metavar="DIR",
        group=JOBS,
    )
    max_concurrent_jobs: int = setting(
        1,
        "worker processes at once; other jobs wait Pending (0 accepts jobs but starts none)",
        minimum=0,
        group=JOBS,
    )
    max_attempts: int = setting(3, "worker runs per job, counting resumes after server restarts", minimum=1, group=JOBS)
    stop_grace_seconds: float = setting(
        30.0,
        "how long a stopped worker may take to stop at a batch boundary before it is killed",
        minimum=0,
        group=JOBS,
    )
    shutdown_grace_seconds: float = setting(
        5.0, "on SIGTERM: how long running calls get to finish", minimum=0, group=NETWORK
    )
    s3_endpoint_url: str | None = setting(
        None,
        "S3-compatible endpoint for s3:// channels (credentials: the standard AWS_* variables)",
        env="TFIC_S3_ENDPOINT_URL",
        group=JOBS,
    )
    tls_cert: Path | None = setting(None, security.TLS_CERT_HELP, group=NETWORK)
    tls_key: Path | None = setting(None, security.TLS_KEY_HELP, group=NETWORK)
    tls_client_ca: Path | None = setting(None, security.TLS_CLIENT_CA_HELP, group=NETWORK)
    auth_token: str | None = setting(None, security.AUTH_TOKEN_HELP, group=NETWORK)
    # Extra environment for the worker processes (tests), not a setting.
    worker_env: dict[str, str] = field(default_factory=dict)
    port_file: Path | None = setting(
        None, "write the bound port to this file once serving (with --port 0)", group=NETWORK
    )

    def __post_init__(self) -> None:
        check(self)
        for root in self.data_roots:
            if not root.is_dir():
                raise InvalidArgument(f"--data-root {root} is not a folder")
        security.check_settings(self.tls_cert, self.tls_key, self.tls_client_ca, self.auth_token)
        # Workers run in their own folders: every path they are handed is absolute.
        object.__setattr__(self, "state_dir", self.state_dir.resolve())
        object.__setattr__(self, "model_base_path", self.model_base_path.resolve())
        object.__setattr__(self, "data_roots", tuple(r.resolve() for r in self.data_roots))

    @property
    def database(self) -> Path:
        from trainer_svc.service.store import DATABASE_FILE

        return self.state_dir / DATABASE_FILE

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    def tensorboard_dir(self, job_id: str) -> Path:
        """A job's TensorBoard event files: beside its work directory, which its worker is given."""
        return self.jobs_dir / job_id / TENSORBOARD_DIR

    def policy(self) -> DataPolicy:
        return DataPolicy(DataRoots(self.data_roots), self.model_base_path, S3Options(self.s3_endpoint_url))
