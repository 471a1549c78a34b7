"""The inference service's settings: one frozen object built once from flags and ``TFIC_`` variables.

Flags about the model repository read ``TFIC_MODEL_*`` variables; every other flag reads
``TFIC_INFERENCE_<FLAG>`` (e.g. ``--max-batch-size`` ↔ ``TFIC_INFERENCE_MAX_BATCH_SIZE``), so the
services' variables never collide. Batching can also be set per model in a YAML/JSON file
(``--batching-config``)::

    max_batch_size: 32          # optional: global values, override the flags
    models:
      resnet50: {max_batch_size: 16, batch_timeout_micros: 2000}
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tfic.errors import InvalidArgument
from tfic.imaging import DecodeLimits
from tfic.settings import add_flag

RUNTIMES = ("tensorflow", "tfserving")
_MIB = 1024 * 1024


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


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
    num_batch_threads: int = 1
    max_enqueued_batches: int = 32
    allowed_batch_sizes: tuple[int, ...] = ()  # empty: powers of two up to max_batch_size

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
        """The shapes the runtime sees: batches are padded up to the next of these."""
        if not self.enabled:
            return (1,)
        if self.allowed_batch_sizes:
            return self.allowed_batch_sizes
        sizes = []
        size = 1
        while size < self.max_batch_size:
            sizes.append(size)
            size *= 2
        sizes.append(self.max_batch_size)
        return tuple(sizes)

    def updated(self, values: Mapping[str, Any]) -> BatchingSettings:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgument(f"unknown batching setting(s) {unknown}; known: {sorted(known)}")
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key == "allowed_batch_sizes":
                converted[key] = _int_tuple(value)
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
    model_base_path: Path | None = None
    model_name: str = ""  # the model's name when --model-base-path is itself one model's directory
    model_config_file: Path | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    poll_interval_seconds: float = 1.0
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    model_batching: Mapping[str, BatchingSettings] = field(default_factory=dict)
    decode_workers: int = field(default_factory=_cores)
    max_decode_queue: int = 1024
    max_image_bytes: int = 20 * _MIB
    max_pixels: int = 50_000_000
    max_images_per_request: int = 256
    max_request_bytes: int = 64 * _MIB
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
    drain_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    keepalive_time_seconds: float = 30.0
    keepalive_timeout_seconds: float = 10.0
    max_connection_age_seconds: float = 300.0
    max_connection_age_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.model_base_path is None and self.model_config_file is None:
            raise InvalidArgument("set --model-base-path or --model-config-file")
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


def _int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    return tuple(int(v) for v in value)


def _sizes(text: str) -> tuple[int, ...]:
    """Comma-separated integers (a ValueError tells argparse the value is invalid)."""
    return _int_tuple(text)


def _inference(flag: str) -> str:
    return "TFIC_INFERENCE_" + flag.lstrip("-").replace("-", "_").upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting as a flag whose default comes from its environment variable."""
    g = parser.add_argument_group("server")
    add_flag(g, "--host", default="0.0.0.0", env="TFIC_INFERENCE_HOST", help="address to listen on")
    add_flag(g, "--port", type=int, default=8500, env="TFIC_INFERENCE_PORT", help="gRPC port (0: any free port)")
    add_flag(
        g,
        "--metrics-port",
        type=int,
        default=9100,
        env="TFIC_INFERENCE_METRICS_PORT",
        help="Prometheus /metrics port (0: any free port, negative: off)",
    )
    g = parser.add_argument_group("model repository")
    add_flag(
        g,
        "--model-base-path",
        type=Path,
        env="TFIC_MODEL_BASE_PATH",
        help="serve every model in BASE/<name>/<version>/ (or one model if BASE/<version>/ exists)",
    )
    add_flag(
        g, "--model-name", default="", env="TFIC_MODEL_NAME", help="name for a base path that is one model's directory"
    )
    add_flag(
        g,
        "--model-config-file",
        type=Path,
        env="TFIC_MODEL_CONFIG_FILE",
        help="TensorFlow Serving model config (text proto model_config_list); re-read when it changes",
    )
    add_flag(
        g,
        "--version-policy",
        default="latest:1",
        env="TFIC_MODEL_VERSION_POLICY",
        help="versions served with --model-base-path: latest, latest:N, all, specific:V1,V2",
    )
    add_flag(
        g,
        "--poll-interval-seconds",
        type=float,
        default=1.0,
        env="TFIC_MODEL_POLL_INTERVAL_SECONDS",
        help="how often the file system is scanned for new versions",
    )
    g = parser.add_argument_group("dynamic batching (per model: --batching-config)")
    add_flag(g, "--enable-batching", type=bool, default=True, env=_inference("enable-batching"), help="batch requests")
    add_flag(g, "--max-batch-size", type=int, default=32, env=_inference("max-batch-size"), help="largest batch")
    add_flag(
        g,
        "--batch-timeout-micros",
        type=int,
        default=1000,
        env=_inference("batch-timeout-micros"),
        help="how long a non-full batch may wait for more requests while another batch runs",
    )
    add_flag(
        g,
        "--num-batch-threads",
        type=int,
        default=1,
        env=_inference("num-batch-threads"),
        help="batches that may run at once",
    )
    add_flag(
        g,
        "--max-enqueued-batches",
        type=int,
        default=32,
        env=_inference("max-enqueued-batches"),
        help="queue bound per model version; beyond it requests fail with RESOURCE_EXHAUSTED",
    )
    add_flag(
        g,
        "--allowed-batch-sizes",
        type=_sizes,
        default=None,
        env=_inference("allowed-batch-sizes"),
        help="comma-separated sizes batches are padded to; the last must equal --max-batch-size "
        "(default: powers of two)",
    )
    add_flag(
        g,
        "--batching-config",
        type=Path,
        env=_inference("batching-config"),
        help="YAML/JSON file with global and per-model batching settings",
    )
    g = parser.add_argument_group("preprocessing and limits")
    add_flag(
        g,
        "--decode-workers",
        type=int,
        default=_cores(),
        env=_inference("decode-workers"),
        help="threads decoding images",
    )
    add_flag(
        g,
        "--max-decode-queue",
        type=int,
        default=1024,
        env=_inference("max-decode-queue"),
        help="images waiting for a decode worker before RESOURCE_EXHAUSTED",
    )
    add_flag(g, "--max-image-bytes", type=int, default=20 * _MIB, env=_inference("max-image-bytes"), help="per image")
    add_flag(
        g,
        "--max-pixels",
        type=int,
        default=50_000_000,
        env=_inference("max-pixels"),
        help="per image (decompression bombs)",
    )
    add_flag(
        g,
        "--max-images-per-request",
        type=int,
        default=256,
        env=_inference("max-images-per-request"),
        help="images in one request",
    )
    add_flag(
        g,
        "--max-request-bytes",
        type=int,
        default=64 * _MIB,
        env=_inference("max-request-bytes"),
        help="gRPC receive message limit",
    )
    add_flag(
        g,
        "--use-draft",
        type=bool,
        default=True,
        env=_inference("use-draft"),
        help="let libjpeg decode large JPEGs at 1/2, 1/4 or 1/8 scale (never below the model's size)",
    )
    g = parser.add_argument_group("runtime")
    add_flag(g, "--runtime", default="tensorflow", env=_inference("runtime"), help="tensorflow | tfserving")
    add_flag(
        g,
        "--tfserving-target",
        default="",
        env=_inference("tfserving-target"),
        help="HOST:PORT of TensorFlow Serving for --runtime tfserving (it must see the same model directories)",
    )
    add_flag(
        g,
        "--tfserving-timeout-seconds",
        type=float,
        default=30.0,
        env=_inference("tfserving-timeout-seconds"),
        help="deadline of each remote Predict",
    )
    add_flag(g, "--load-threads", type=int, default=2, env=_inference("load-threads"), help="versions loaded at once")
    add_flag(
        g,
        "--load-timeout-seconds",
        type=float,
        default=300.0,
        env=_inference("load-timeout-seconds"),
        help="give up waiting for a remote version",
    )
    add_flag(
        g,
        "--warmup-iterations",
        type=int,
        default=2,
        env=_inference("warmup-iterations"),
        help="inferences per allowed batch size before a version takes traffic",
    )
    add_flag(
        g,
        "--tf-intra-op-threads",
        type=int,
        default=0,
        env=_inference("tf-intra-op-threads"),
        help="TensorFlow threads per op (0: all cores)",
    )
    add_flag(
        g,
        "--tf-inter-op-threads",
        type=int,
        default=0,
        env=_inference("tf-inter-op-threads"),
        help="TensorFlow ops run at once (0: TensorFlow's default)",
    )
    add_flag(g, "--xla", type=bool, default=False, env=_inference("xla"), help="compile the padded shapes with XLA")
    g = parser.add_argument_group("connections and shutdown")
    add_flag(
        g,
        "--drain-seconds",
        type=float,
        default=5.0,
        env=_inference("drain-seconds"),
        help="on SIGTERM: report NOT_SERVING for this long before refusing new calls",
    )
    add_flag(
        g,
        "--shutdown-grace-seconds",
        type=float,
        default=10.0,
        env=_inference("shutdown-grace-seconds"),
        help="then wait this long for running calls",
    )
    add_flag(
        g,
        "--keepalive-time-seconds",
        type=float,
        default=30.0,
        env=_inference("keepalive-time-seconds"),
        help="ping idle connections this often",
    )
    add_flag(
        g,
        "--keepalive-timeout-seconds",
        type=float,
        default=10.0,
        env=_inference("keepalive-timeout-seconds"),
        help="close a connection whose ping is not answered in this time",
    )
    add_flag(
        g,
        "--max-connection-age-seconds",
        type=float,
        default=300.0,
        env=_inference("max-connection-age-seconds"),
        help="close connections after this long so clients rebalance onto new pods",
    )
    add_flag(
        g,
        "--max-connection-age-grace-seconds",
        type=float,
        default=30.0,
        env=_inference("max-connection-age-grace-seconds"),
        help="time calls get to finish on a connection being aged out",
    )


def read_batching_config(path: Path, base: BatchingSettings) -> tuple[BatchingSettings, dict[str, BatchingSettings]]:
    """Global and per-model batching settings from a YAML or JSON file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read batching config {path}: {exc}") from None
    data: Any
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise InvalidArgument(f"batching config {path} is not valid YAML/JSON: {exc}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"batching config {path} must be a mapping")
    models = data.pop("models", None) or {}
    if not isinstance(models, dict):
        raise InvalidArgument(f"batching config {path}: 'models' must map model names to settings")
    default = base.updated(data)
    per_model = {str(name): default.updated(values or {}) for name, values in models.items()}
    return default, per_model


def from_args(args: argparse.Namespace) -> Settings:
    """Build the settings once, at the entry point."""
    batching = BatchingSettings(
        enabled=bool(args.enable_batching),
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        num_batch_threads=args.num_batch_threads,
        max_enqueued_batches=args.max_enqueued_batches,
        allowed_batch_sizes=tuple(args.allowed_batch_sizes or ()),
    )
    model_batching: dict[str, BatchingSettings] = {}
    if args.batching_config is not None:
        batching, model_batching = read_batching_config(args.batching_config, batching)
    return Settings(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        model_base_path=args.model_base_path,
        model_name=args.model_name,
        model_config_file=args.model_config_file,
        version_policy=VersionPolicy.parse(args.version_policy),
        poll_interval_seconds=args.poll_interval_seconds,
        batching=batching,
        model_batching=model_batching,
        decode_workers=args.decode_workers,
        max_decode_queue=args.max_decode_queue,
        max_image_bytes=args.max_image_bytes,
        max_pixels=args.max_pixels,
        max_images_per_request=args.max_images_per_request,
        max_request_bytes=args.max_request_bytes,
        use_draft=bool(args.use_draft),
        runtime=args.runtime,
        tfserving_target=args.tfserving_target,
        tfserving_timeout_seconds=args.tfserving_timeout_seconds,
        load_threads=args.load_threads,
        load_timeout_seconds=args.load_timeout_seconds,
        warmup_iterations=args.warmup_iterations,
        tf_intra_op_threads=args.tf_intra_op_threads,
        tf_inter_op_threads=args.tf_inter_op_threads,
        xla=bool(args.xla),
        drain_seconds=args.drain_seconds,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        keepalive_time_seconds=args.keepalive_time_seconds,
        keepalive_timeout_seconds=args.keepalive_timeout_seconds,
        max_connection_age_seconds=args.max_connection_age_seconds,
        max_connection_age_grace_seconds=args.max_connection_age_grace_seconds,
    )
