"""The inference service's settings: one frozen object, each field one setting (see :mod:`tfic.settings`),
built once at the entry point from flags and environment variables.

The model repository's settings read ``TFIC_MODEL_*`` variables, every other one ``TFIC_INFERENCE_<FLAG>``
(``--max-batch-size`` ↔ ``TFIC_INFERENCE_MAX_BATCH_SIZE``), so the services' variables never collide.
Batching can also be set per model in a YAML/JSON file (``--batching-config``, read by
:func:`with_batching_config`)::

    max_batch_size: 32          # optional: global values, override the flags
    models:
      resnet50: {max_batch_size: 16, batch_timeout_micros: 2000}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from tfic import grpc_security as security
from tfic.errors import InvalidArgument
from tfic.imaging import DecodeLimits
from tfic.settings import check, nested, setting

RUNTIMES = ("tensorflow", "tfserving")
EVENT_LOOPS = ("uvloop", "asyncio")
# How the data plane yields to the event loop (inference_svc/priority.py).
DATA_PLANE_POLICIES = ("nice", "idle")
DECODE_POOLS = ("threads", "processes")
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


def intra_op_threads_per_batch(cores: int, batch_threads: int) -> int:
    """TensorFlow's intra-op pool size for ``batch_threads`` batches at once: the cores divided among them.

    The pool is one per process, shared by every running batch. TensorFlow's default, a pool of all cores,
    split each op of two concurrent batches over the same threads, which spun while they waited. At size 1
    there is no pool: each batch computes in its own thread. On 2 cores with 2 batch threads that served
    EfficientNet-Lite0 with a third less CPU per request at one client and 1.5x the images/s at 4
    (docs/inference.md, Tuning). Above 2 cores the smaller shared pool is reasoned from that, not measured.
    """
    return max(1, cores // max(1, batch_threads))


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


SERVER = "server"
SECURITY = "security (off by default; docs/inference.md, Security)"
REPOSITORY = "model repository"
BATCHING = "dynamic batching (per model: --batching-config)"
LIMITS = "preprocessing and limits"
RUNTIME = "runtime"
CONNECTIONS = "connections and shutdown"


def _model(flag: str) -> str:
    return "TFIC_MODEL_" + flag.replace("-", "_").upper()


@dataclass(frozen=True)
class BatchingSettings:
    """Dynamic batching of one model version (see :mod:`inference_svc.batcher`)."""

    enabled: bool = setting(True, "batch requests", flag="--enable-batching", group=BATCHING)
    max_batch_size: int = setting(32, "largest batch", minimum=1, group=BATCHING)
    batch_timeout_micros: int = setting(
        1000, "how long a non-full batch may wait for requests still being decoded", minimum=0, group=BATCHING
    )
    num_batch_threads: int = setting(
        2,
        "batches that may run at once (2: one runs while the next forms; 1 forms larger batches)",
        minimum=1,
        group=BATCHING,
    )
    max_enqueued_batches: int = setting(
        32,
        "queue bound per model version; beyond it requests fail with RESOURCE_EXHAUSTED",
        minimum=1,
        group=BATCHING,
    )
    adaptive: bool = setting(
        True,
        "measure the version's cost per batch size at warm-up and start a batch beside a running one only "
        "when that serves more images/s than waiting to merge it (off: any free batch thread starts the queue)",
        flag="--adaptive-batching",
        group=BATCHING,
    )
    allowed_batch_sizes: tuple[int, ...] = setting(
        (),
        "comma-separated sizes batches are padded to; the last must equal --max-batch-size",
        default_text="1,2,3,4,6,8,12,16,24,32,… (powers of two and their midpoints)",
        group=BATCHING,
    )

    def __post_init__(self) -> None:
        check(self)
        sizes = self.allowed_batch_sizes
        if sizes:
            if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
                raise InvalidArgument(f"--allowed-batch-sizes must be increasing positive integers, got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise InvalidArgument(
                    f"the last allowed batch size ({sizes[-1]}) must equal max_batch_size "
                    f"(--max-batch-size, {self.max_batch_size})"
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
            elif key in ("enabled", "adaptive"):
                converted[key] = bool(value)
            else:
                converted[key] = int(value)
        return replace(self, **converted)


@dataclass(frozen=True)
class Settings:
    ENV_PREFIX: ClassVar[str] = "TFIC_INFERENCE_"

    host: str = setting("0.0.0.0", "address to listen on", group=SERVER)
    port: int = setting(8500, "gRPC port (0: any free port)", minimum=0, maximum=65535, group=SERVER)
    metrics_port: int = setting(
        9100, "Prometheus /metrics port (0: any free port, negative: off)", maximum=65535, group=SERVER
    )
    metrics_host: str = setting(
        "",
        "address the /metrics endpoint listens on (plain HTTP, no token: 127.0.0.1 keeps it off the network)",
        default_text="--host",
        group=SERVER,
    )
    port_file: Path | None = setting(
        None, "write the bound gRPC port to this file once listening (with --port 0)", group=SERVER
    )
    tls_cert: Path | None = setting(None, security.TLS_CERT_HELP, group=SECURITY)
    tls_key: Path | None = setting(None, security.TLS_KEY_HELP, group=SECURITY)
    tls_client_ca: Path | None = setting(None, security.TLS_CLIENT_CA_HELP, group=SECURITY)
    auth_token: str | None = setting(None, security.AUTH_TOKEN_HELP, group=SECURITY)
    # Read by the entry point, which creates the loop.
    event_loop: str = setting(
        "uvloop",
        "the event loop serving gRPC: uvloop (less CPU per call) or Python's own asyncio",
        choices=EVENT_LOOPS,
        group=SERVER,
    )
    model_base_path: Path | None = setting(
        None,
        "serve every model in BASE/<name>/<version>/ (or one model if BASE/<version>/ exists)",
        env=_model("base-path"),
        group=REPOSITORY,
    )
    model_name: str = setting(
        "",
        "name for a base path that is one model's directory (default: the directory's name)",
        env=_model("name"),
        group=REPOSITORY,
    )
    model_config_file: Path | None = setting(
        None,
        "TensorFlow Serving model config (text proto model_config_list); re-read when it changes",
        env=_model("config-file"),
        group=REPOSITORY,
    )
    version_policy: VersionPolicy = setting(
        help="versions served with --model-base-path: latest, latest:N, all, specific:V1,V2",
        factory=VersionPolicy,
        default_text="latest:1",
        parse=VersionPolicy.parse,
        kind="policy",
        env=_model("version-policy"),
        group=REPOSITORY,
    )
    poll_interval_seconds: float = setting(
        1.0,
        "how often the file system is scanned for new versions",
        above=0,
        env=_model("poll-interval-seconds"),
        group=REPOSITORY,
    )
    canary_share: float = setting(
        0.1,
        "share of a model's requests (those naming no version or label) the version labelled canary answers, "
        "when its version_labels.json sets no canary_share",
        minimum=0,
        maximum=1,
        env=_model("canary-share"),
        group=REPOSITORY,
    )
    batching: BatchingSettings = nested(BatchingSettings)
    batching_config: Path | None = setting(
        None, "YAML/JSON file with global and per-model batching settings", group=BATCHING
    )
    # Read from --batching-config by with_batching_config, not a setting of its own.
    model_batching: Mapping[str, BatchingSettings] = field(default_factory=dict)
    decode_workers: int = setting(
        help="threads (or, with --decode-pool processes, processes) decoding images",
        factory=cpu_cores,
        default_text="the cores this process may use (affinity, capped by a container's CPU limit)",
        minimum=1,
        group=LIMITS,
    )
    decode_pool: str = setting(
        "threads",
        "where images are decoded: threads of the server process, or worker processes (as many as "
        "--decode-workers: no decode work under the server's GIL, and decoding scales past one interpreter, for "
        "a decode-bound many-core node; measured on 2 cores: ~10 % slower at one client, level at 16, and a "
        "longer refusal tail under saturation: docs/inference.md, Decode processes)",
        choices=DECODE_POOLS,
        group=LIMITS,
    )
    max_concurrent_requests: int = setting(
        128,
        "inference calls (Classify, Predict) handled at once, from before the request is read until the answer; "
        "more are refused at once with RESOURCE_EXHAUSTED and a 1 s RetryInfo (HTTP 429 at the gateway), before "
        "any of their bytes are read or decoded. Size it as throughput x the queueing delay you accept "
        "(docs/inference.md, Admission control); 0: no limit",
        minimum=0,
        group=LIMITS,
    )
    accept_depth: int = setting(
        32,
        "calls of each inference method gRPC's core may hand to the server at once, beyond grpc.aio's one: a "
        "burst of calls (a batch's clients sending their next) reaches the event loop in one turn instead of "
        "one call per turn, so a refusal does not queue behind the burst (docs/inference.md, Admission "
        "control); 0: grpc.aio's own single accept, for clients that retry without back-off (fast refusals "
        "let such a flood take the cores)",
        minimum=0,
        maximum=1024,
        group=LIMITS,
    )
    data_plane_niceness: int = setting(
        10,
        "nice value added to the decode, batch, model-loading and TensorFlow threads, so that under saturation "
        "the event loop (accepting, refusing, health probes, responses) is scheduled first; needs no privilege "
        "(Linux; 0: all threads at the process's priority)",
        minimum=0,
        maximum=19,
        group=LIMITS,
    )
    data_plane_policy: str = setting(
        "nice",
        "how the data plane yields to the event loop: nice (the niceness above only) or idle (also Linux's "
        "SCHED_IDLE, no privilege needed: the loop preempts it at once, which shortens a refusal's wait under "
        "saturation; but it yields to every normal thread on the core, and refusing clients that retry without "
        "back-off then starve it: docs/inference.md)",
        choices=DATA_PLANE_POLICIES,
        group=LIMITS,
    )
    max_decode_queue: int = setting(
        1024, "images waiting for a decode worker before RESOURCE_EXHAUSTED", minimum=1, group=LIMITS
    )
    max_image_bytes: int = setting(20 * MIB, "per image", minimum=1, group=LIMITS)
    max_pixels: int = setting(50_000_000, "per image (decompression bombs)", minimum=1, group=LIMITS)
    max_images_per_request: int = setting(256, "images in one request", minimum=1, group=LIMITS)
    max_request_bytes: int = setting(
        64 * MIB,
        "gRPC send/receive message limit (must exceed --max-image-bytes, so an oversized image gets a precise "
        "INVALID_ARGUMENT rather than gRPC's own RESOURCE_EXHAUSTED)",
        minimum=1,
        group=LIMITS,
    )
    use_draft: bool = setting(
        True,
        "decode JPEGs with the preprocessing definition's DCT scaling (1/2, 1/4, 1/8, never below the model's "
        "size): the model's own pixels. --no-use-draft (opt-in) decodes them at full size instead, which is not "
        "what the model was trained on: max |dp| 0.046, 3 of 341 labels changed on clothing-small photos enlarged "
        "2x, and 4.4x slower on a 5 MP photo (docs/inference.md, Preprocessing)",
        group=LIMITS,
    )
    runtime: str = setting(
        "tensorflow",
        "tensorflow (in process) or tfserving (a remote TensorFlow Serving)",
        choices=RUNTIMES,
        group=RUNTIME,
    )
    tfserving_target: str = setting(
        "",
        "HOST:PORT of TensorFlow Serving for --runtime tfserving (it must see the same model directories)",
        group=RUNTIME,
    )
    tfserving_timeout_seconds: float = setting(30.0, "deadline of each remote Predict", above=0, group=RUNTIME)
    load_threads: int = setting(2, "versions loaded at once", minimum=1, group=RUNTIME)
    load_timeout_seconds: float = setting(
        300.0, "give up waiting for a remote version to become AVAILABLE", above=0, group=RUNTIME
    )
    warmup_iterations: int = setting(
        2, "inferences per allowed batch size before a version takes traffic", minimum=0, group=RUNTIME
    )
    tf_intra_op_threads: int = setting(
        0,
        "TensorFlow threads per op (0: the cores divided by --num-batch-threads, at least 1; on 2 cores each batch "
        "then computes in its own thread; embedded in another program, TensorFlow's own pool of all cores)",
        minimum=0,
        group=RUNTIME,
    )
    tf_inter_op_threads: int = setting(
        0, "TensorFlow ops run at once (0: TensorFlow's default)", minimum=0, group=RUNTIME
    )
    xla: bool = setting(False, "compile each padded batch shape with XLA (jit_compile)", group=RUNTIME)
    mixed_precision: str = setting(
        "off",
        "let TensorFlow rewrite float32 models to compute in float16 (GPU) or bfloat16 (CPU with oneDNN; fast on "
        "AVX512-BF16/AMX): probabilities change by about 1e-3 to 1e-2; not with --xla",
        choices=MIXED_PRECISIONS,
        group=RUNTIME,
    )
    drain_seconds: float = setting(
        5.0,
        "on SIGTERM: report NOT_SERVING for this long (still answering) before refusing new calls",
        minimum=0,
        group=CONNECTIONS,
    )
    shutdown_grace_seconds: float = setting(10.0, "then wait this long for running calls", minimum=0, group=CONNECTIONS)
    keepalive_time_seconds: float = setting(30.0, "ping idle connections this often", above=0, group=CONNECTIONS)
    keepalive_timeout_seconds: float = setting(
        10.0, "close a connection whose ping is not answered in this time", above=0, group=CONNECTIONS
    )
    max_connection_age_seconds: float = setting(
        300.0, "close connections after this long so clients rebalance onto new pods", above=0, group=CONNECTIONS
    )
    max_connection_age_grace_seconds: float = setting(
        30.0, "time calls get to finish on a connection being aged out", minimum=0, group=CONNECTIONS
    )

    def __post_init__(self) -> None:
        check(self)
        security.check_settings(self.tls_cert, self.tls_key, self.tls_client_ca, self.auth_token)
        if self.model_base_path is None and self.model_config_file is None:
            raise InvalidArgument("set --model-base-path or --model-config-file")
        if self.xla and self.mixed_precision != "off":
            raise InvalidArgument(
                "--xla and --mixed-precision do not combine (XLA skips the graph rewrite); choose one"
            )
        if self.runtime == "tfserving" and not self.tfserving_target:
            raise InvalidArgument("--runtime tfserving needs --tfserving-target HOST:PORT")
        if self.max_request_bytes <= self.max_image_bytes:
            raise InvalidArgument("--max-request-bytes must be larger than --max-image-bytes")

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_pixels)

    def batching_for(self, model: str) -> BatchingSettings:
        return self.model_batching.get(model, self.batching)


def with_batching_config(settings: Settings) -> Settings:
    """``settings`` with ``--batching-config``'s global and per-model values applied (they override the flags)."""
    if settings.batching_config is None:
        return settings
    batching, per_model = read_batching_config(settings.batching_config, settings.batching)
    return replace(settings, batching=batching, model_batching=per_model)


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
    try:
        default = base.updated(data)
        per_model = {str(name): default.updated(values or {}) for name, values in models.items()}
    except (InvalidArgument, ValueError, TypeError) as exc:
        raise InvalidArgument(f"batching config {path}: {getattr(exc, 'message', exc)}") from None
    return default, per_model


def int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    return tuple(int(v) for v in value)
