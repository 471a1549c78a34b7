"""The gateway's settings: one frozen object built once by :mod:`gateway.main` from flags and ``TFIC_`` env vars."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from gateway.negotiation import parse_format
from tfic.errors import InvalidArgument
from tfic.settings import add_flag

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time payload limit


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: int = 8080
    # gRPC target of the inference service: HOST:PORT, or dns:///HOST:PORT (e.g. a headless Kubernetes service).
    inference: str = "localhost:8500"
    # Model for /invocations when no X-Tfic-Model / X-Amzn-SageMaker-Target-Model header names one ("" = the only
    # model the inference service serves).
    default_model: str = ""
    # The representation for a missing Accept header or */*: one of gateway.negotiation.FORMATS.
    default_accept: str = "application/json"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Upper bound of every gRPC deadline; a shorter X-Request-Timeout header wins.
    timeout_seconds: float = 60.0
    # Bearer token required on every route but the health checks, /metrics and /openapi.json (None: no auth).
    auth_token: str | None = None
    # How long in-flight requests may take to finish after SIGTERM.
    shutdown_grace_seconds: float = 10.0
    # Retry-After (seconds) sent with 429/503 when the inference service suggests none.
    retry_after_seconds: int = 1
    # Request coalescing (gateway.coalesce): at most this many one-image requests of a model share an upstream
    # call (1 turns coalescing off) ...
    coalesce_max_images: int = 8
    # ... and they wait for one only while this many calls for that model are outstanding.
    coalesce_max_in_flight: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidArgument(f"port must be 0..65535, got {self.port}")
        if not self.inference.strip():
            raise InvalidArgument("the inference service target must not be empty")
        if self.max_body_bytes < 1:
            raise InvalidArgument(f"max_body_bytes must be at least 1, got {self.max_body_bytes}")
        if self.timeout_seconds <= 0:
            raise InvalidArgument(f"timeout_seconds must be positive, got {self.timeout_seconds}")
        if self.shutdown_grace_seconds < 0:
            raise InvalidArgument(f"shutdown_grace_seconds must be >= 0, got {self.shutdown_grace_seconds}")
        if self.retry_after_seconds < 0:
            raise InvalidArgument(f"retry_after_seconds must be >= 0, got {self.retry_after_seconds}")
        if self.coalesce_max_images < 1:
            raise InvalidArgument(f"coalesce_max_images must be at least 1, got {self.coalesce_max_images}")
        if self.coalesce_max_in_flight < 1:
            raise InvalidArgument(f"coalesce_max_in_flight must be at least 1, got {self.coalesce_max_in_flight}")
        if self.auth_token is not None and not self.auth_token.strip():
            raise InvalidArgument("auth_token must not be blank (leave it unset to disable auth)")
        parse_format(self.default_accept)  # raises InvalidArgument for an unsupported type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = GatewaySettings()
    add_flag(parser, "--host", default=defaults.host, env="TFIC_GATEWAY_HOST", help="address to listen on")
    add_flag(parser, "--port", type=int, default=defaults.port, env="TFIC_GATEWAY_PORT", help="HTTP port (0: any)")
    add_flag(
        parser,
        "--inference",
        default=defaults.inference,
        env="TFIC_GATEWAY_INFERENCE",
        help="gRPC target of the inference service, HOST:PORT or dns:///HOST:PORT (round-robin over its addresses)",
    )
    add_flag(
        parser,
        "--default-model",
        default=defaults.default_model,
        env="TFIC_GATEWAY_DEFAULT_MODEL",
        help="model for /invocations without a model header (empty: the only model served)",
    )
    add_flag(
        parser,
        "--default-accept",
        default=defaults.default_accept,
        env="TFIC_GATEWAY_DEFAULT_ACCEPT",
        help="response type for a missing Accept or */*: application/json, application/json;verbose, "
        "application/jsonlines",
    )
    add_flag(
        parser,
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        env="TFIC_GATEWAY_MAX_BODY_BYTES",
        help="largest request body; larger ones get 413",
    )
    add_flag(
        parser,
        "--timeout-seconds",
        type=float,
        default=defaults.timeout_seconds,
        env="TFIC_GATEWAY_TIMEOUT_SECONDS",
        help="deadline of each call to the inference service (a shorter X-Request-Timeout header wins)",
    )
    add_flag(
        parser,
        "--auth-token",
        default=None,
        env="TFIC_GATEWAY_AUTH_TOKEN",
        help="require 'Authorization: Bearer TOKEN' (off when unset)",
    )
    add_flag(
        parser,
        "--shutdown-grace-seconds",
        type=float,
        default=defaults.shutdown_grace_seconds,
        env="TFIC_GATEWAY_SHUTDOWN_GRACE_SECONDS",
        help="time in-flight requests get to finish after SIGTERM",
    )
    add_flag(
        parser,
        "--retry-after-seconds",
        type=int,
        default=defaults.retry_after_seconds,
        env="TFIC_GATEWAY_RETRY_AFTER_SECONDS",
        help="Retry-After sent with 429/503 when the inference service suggests none",
    )
    add_flag(
        parser,
        "--coalesce-max-images",
        type=int,
        default=defaults.coalesce_max_images,
        env="TFIC_GATEWAY_COALESCE_MAX_IMAGES",
        help="under load, up to this many one-image requests for the same model share one call to the inference "
        "service (1: off)",
    )
    add_flag(
        parser,
        "--coalesce-max-in-flight",
        type=int,
        default=defaults.coalesce_max_in_flight,
        env="TFIC_GATEWAY_COALESCE_MAX_IN_FLIGHT",
        help="requests are sent alone while fewer calls than this are outstanding for their model",
    )


def from_args(args: argparse.Namespace) -> GatewaySettings:
    return GatewaySettings(
        host=args.host,
        port=args.port,
        inference=args.inference,
        default_model=args.default_model or "",
        default_accept=args.default_accept,
        max_body_bytes=args.max_body_bytes,
        timeout_seconds=args.timeout_seconds,
        auth_token=args.auth_token or None,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        retry_after_seconds=args.retry_after_seconds,
        coalesce_max_images=args.coalesce_max_images,
        coalesce_max_in_flight=args.coalesce_max_in_flight,
    )
