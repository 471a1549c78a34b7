"""The Trainer service's settings: one frozen object, built once by ``trainer_svc.main`` from flags/env."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainer_svc.service.datapaths import DataRoots
from trainer_svc.service.s3 import S3Options
from trainer_svc.service.validation import DataPolicy


@dataclass(frozen=True)
class TrainerSettings:
    state_dir: Path
    model_base_path: Path
    data_roots: tuple[Path, ...] = ()
    host: str = "0.0.0.0"
    port: int = 8600
    metrics_port: int | None = 9101  # None: no metrics endpoint
    max_concurrent_jobs: int = 1  # 0 accepts jobs but starts none (maintenance)
    max_attempts: int = 3  # worker runs per job, counting resumes after restarts
    stop_grace_seconds: float = 30.0
    shutdown_grace_seconds: float = 5.0
    s3_endpoint_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_token: str | None = None
    worker_env: dict[str, str] = field(default_factory=dict)  # extra environment for workers
    port_file: Path | None = None  # the bound port is written here once serving (for --port 0)

    @property
    def database(self) -> Path:
        from trainer_svc.service.store import DATABASE_FILE

        return self.state_dir / DATABASE_FILE

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    def policy(self) -> DataPolicy:
        return DataPolicy(DataRoots(self.data_roots), self.model_base_path, S3Options(self.s3_endpoint_url))
