"""Every inference setting as a flag whose default comes from a ``TFIC_`` environment variable.

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
import dataclasses
import json
from pathlib import Path
from typing import Any

from inference_svc.settings import (
    EVENT_LOOPS,
    MIB,
    MIXED_PRECISIONS,
    BatchingSettings,
    Settings,
    VersionPolicy,
    cpu_cores,
    int_tuple,
)
from tfic.errors import InvalidArgument
from tfic.settings import add_flag


def _sizes(text: str) -> tuple[int, ...]:
    """Comma-separated integers (a ValueError tells argparse the value is invalid)."""
    return int_tuple(text)


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
    add_flag(
        g,
        "--event-loop",
        default="uvloop",
        choices=EVENT_LOOPS,
        env=_inference("event-loop"),
        help="the event loop serving gRPC: uvloop (less CPU per call) or Python's own asyncio",
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
        help="how long a non-full batch may wait for requests still being decoded",
    )
    add_flag(
        g,
        "--num-batch-threads",
        type=int,
        default=2,
        env=_inference("num-batch-threads"),
        help="batches that may run at once (2: one runs while the next forms; 1 forms larger batches)",
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
        default=cpu_cores(),
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
    add_flag(g, "--max-image-bytes", type=int, default=20 * MIB, env=_inference("max-image-bytes"), help="per image")
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
        default=64 * MIB,
        env=_inference("max-request-bytes"),
        help="gRPC receive message limit",
    )
    add_flag(
        g,
        "--use-draft",
        type=bool,
        default=True,
        env=_inference("use-draft"),
        help="decode JPEGs with the preprocessing definition's DCT scaling (1/2, 1/4, 1/8, never below the "
        "model's size): the model's own pixels. --no-use-draft (opt-in) decodes them at full size instead, which is "
        "not what the model was trained on: max |dp| 0.046, 3 of 341 labels changed on clothing-small photos "
        "enlarged 2x, and 4.4x slower on a 5 MP photo (docs/inference.md, Preprocessing)",
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
    add_flag(
        g,
        "--mixed-precision",
        default="off",
        choices=MIXED_PRECISIONS,
        env=_inference("mixed-precision"),
        help="let TensorFlow rewrite float32 models to compute in float16 (GPU) or bfloat16 (CPU with oneDNN; "
        "fast on AVX512-BF16/AMX) — probabilities change by about 1e-3 to 1e-2",
    )
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
    built: dict[str, Any] = {
        "version_policy": VersionPolicy.parse(args.version_policy),
        "batching": batching,
        "model_batching": model_batching,
    }
    # Every other setting is a flag of the same name, already of the right type.
    plain = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if f.name not in built}
    return Settings(**plain, **built)
