"""The inference service's settings: one frozen object, built once at the entry point.

The flags and environment variables that build it are in :mod:`inference_svc.flags`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tfic.errors import InvalidArgument
from tfic.imaging import DecodeLimits

RUNTIMES = ("tensorflow", "tfserving")
EVENT_LOOPS = ("uvloop", "asyncio")
MIXED_PRECISIONS = ("off", "float16", "bfloat16")
MIB = 1024 * 1024


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU limit in cores (cgroup v2 ``cpu.max``, or v1's CFS quota), None when unlimited."""
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
        if quota.strip() != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cpu_cores(root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU limit (a Kubernetes pod
    with ``limits.cpu: 2`` on a 32-core node gets 2, so the decode pool is not sized for cores it will be
    throttled off)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    return cores if limit is None else max(1, min(cores, math.ceil(limit)))


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve, as TensorFlow Serving's ``model_version_policy``."""

    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve among ``available`` (ascending)."""
        ordered = sorted(available)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :] if self.num_versions > 0 else []

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """``latest``, ``latest:N``, ``all`` or ``specific:1,2``."""
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "latest":
                n = int(arg) if arg else 1
                if n < 1:
                    raise ValueError("N must be at least 1")
                return cls("latest", num_versions=n)
            if kind == "all" and not arg:
                return cls("all")
            if kind == "specific" and arg:
                versions = tuple(sorted({int(v) for v in arg.split(",") if v.strip()}))
                if not versions or min(versions) < 1:
                    raise ValueError("versions must be positive integers")
                return cls("specific", versions=versions)
        except ValueError as exc:
            raise InvalidArgument(f"invalid version policy {text!r}: {exc}") from None
        raise InvalidArgument(f"invalid version policy {text!r}: use latest, latest:N, all or specific:V1,V2")

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return self.kind


@dataclass(frozen=True)
class BatchingSettings:
    """Dynamic batching of one model version (see :mod:`inference_svc.batcher`)."""

    enabled: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 32
    allowed_batch_sizes: tuple[int, ...] = ()  # empty: see batch_sizes

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InvalidArgument("max_batch_size must be at least 1")
        if self.batch_timeout_micros < 0:
            raise InvalidArgument("batch_timeout_micros must not be negative")
        if self.num_batch_threads < 1:
            raise InvalidArgument("num_batch_threads must be at least 1")
        if self.max_enqueued_batches < 1:
            raise InvalidArgument("max_enqueued_batches must be at least 1")
        sizes = self.allowed_batch_sizes
        if sizes:
            if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
                raise InvalidArgument(f"allowed_batch_sizes must be increasing positive integers, got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise InvalidArgument(
                    f"the last allowed batch size ({sizes[-1]}) must equal max_batch_size ({self.max_batch_size})"
                )

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The shapes the runtime sees: batches are padded up to the next of these.

        By default powers of two and the midpoints between them (1, 2, 3, 4, 6, 8, 12, 16, 24, 32,
        …): few shapes to warm up, and at most a third of a batch is padding.
        """
        if not self.enabled:
            return (1,)
        if self.allowed_batch_sizes:
            return self.allowed_batch_sizes
        sizes: set[int] = set()
        size = 1
        while size < self.max_batch_size:
            sizes.update((size, size + size // 2))
            size *= 2
        return (*sorted(s for s in sizes if 0 < s < self.max_batch_size), self.max_batch_size)

    def updated(self, values: Mapping[str, Any]) -> BatchingSettings:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgument(f"unknown batching setting(s) {unknown}; known: {sorted(known)}")
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key == "allowed_batch_sizes":
                converted[key] = int_tuple(value)
            elif key == "enabled":
                converted[key] = bool(value)
            else:
                converted[key] = int(value)
        return replace(self, **converted)


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8500
    metrics_port: int = 9100  # 0: an ephemeral port (tests); negative: no metrics endpoint
    event_loop: str = "uvloop"  # read by the entry point, which creates the loop
    model_base_path: Path | None = None
    model_name: str = ""  # the model's name when --model-base-path is itself one model's directory
    model_config_file: Path | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    poll_interval_seconds: float = 1.0
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    model_batching: Mapping[str, BatchingSettings] = field(default_factory=dict)
    decode_workers: int = field(default_factory=cpu_cores)
    max_decode_queue: int = 1024
    max_image_bytes: int = 20 * MIB
    max_pixels: int = 50_000_000
    max_images_per_request: int = 256
    max_request_bytes: int = 64 * MIB
    use_draft: bool = True
    runtime: str = "tensorflow"
    tfserving_target: str = ""
    tfserving_timeout_seconds: float = 30.0
    load_threads: int = 2
    load_timeout_seconds: float = 300.0
    warmup_iterations: int = 2
    tf_intra_op_threads: int = 0  # 0: TensorFlow's default (all cores)
    tf_inter_op_threads: int = 0
    xla: bool = False
    mixed_precision: str = "off"  # off, float16 (GPU), bfloat16 (CPU with oneDNN)
    drain_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    keepalive_time_seconds: float = 30.0
    keepalive_timeout_seconds: float = 10.0
    max_connection_age_seconds: float = 300.0
    max_connection_age_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.model_base_path is None and self.model_config_file is None:
            raise InvalidArgument("set --model-base-path or --model-config-file")
        if self.event_loop not in EVENT_LOOPS:
            raise InvalidArgument(f"unknown event loop {self.event_loop!r}; choose one of {', '.join(EVENT_LOOPS)}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise InvalidArgument(
                f"unknown mixed precision {self.mixed_precision!r}; choose one of {', '.join(MIXED_PRECISIONS)}"
            )
        if self.xla and self.mixed_precision != "off":
            raise InvalidArgument(
                "--xla and --mixed-precision do not combine (XLA skips the graph rewrite); choose one"
            )
        if self.runtime not in RUNTIMES:
            raise InvalidArgument(f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if self.runtime == "tfserving" and not self.tfserving_target:
            raise InvalidArgument("--runtime tfserving needs --tfserving-target HOST:PORT")
        if self.max_request_bytes <= self.max_image_bytes:
            raise InvalidArgument("--max-request-bytes must be larger than --max-image-bytes")
        for name in ("decode_workers", "max_decode_queue", "max_images_per_request", "load_threads"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be at least 1")
        if self.poll_interval_seconds <= 0:
            raise InvalidArgument("--poll-interval-seconds must be positive")

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_pixels)

    def batching_for(self, model: str) -> BatchingSettings:
        return self.model_batching.get(model, self.batching)


def int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    return tuple(int(v) for v in value)
