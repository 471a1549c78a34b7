"""The gateway's settings: one frozen object, each field one setting (flag ``--x`` and variable ``TFIC_GATEWAY_X``,
see :mod:`tfic.settings`), built once by the entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gateway.negotiation import FORMATS, parse_format
from tfic.errors import InvalidArgument
from tfic.settings import check, setting

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time payload limit


def _response_type(text: str) -> str:
    parse_format(text)  # an InvalidArgument names the types there are
    return text


@dataclass(frozen=True)
class GatewaySettings:
    ENV_PREFIX: ClassVar[str] = "TFIC_GATEWAY_"

    host: str = setting("0.0.0.0", "address to listen on")
    port: int = setting(8080, "HTTP port (0: any free port, printed)", minimum=0, maximum=65535)
    inference: str = setting(
        "localhost:8500",
        "gRPC target of the inference service, HOST:PORT or dns:///HOST:PORT (round-robin over its addresses, "
        "e.g. a headless Kubernetes service)",
    )
    metrics_port: int = setting(
        -1,
        "serve /metrics (plain HTTP, no token) on this port of --host instead of --port, so a network policy can "
        "keep it to Prometheus while --port faces callers (0: any free port; negative: /metrics on --port)",
        maximum=65535,
    )
    default_model: str = setting(
        "", "model for /invocations without a model header (empty: the only model served; 400 if several)"
    )
    default_accept: str = setting(
        "application/json",
        f"response type for a missing Accept header or */*: {', '.join(FORMATS)}",
        parse=_response_type,
        kind="media type",
    )
    max_body_bytes: int = setting(
        DEFAULT_MAX_BODY_BYTES, "largest request body (SageMaker's limit); larger ones get 413", minimum=1
    )
    timeout_seconds: float = setting(
        60.0,
        "deadline of each call to the inference service (a shorter X-Request-Timeout header wins)",
        above=0,
    )
    reconnect_max_backoff_seconds: float = setting(
        0.75,
        "longest wait between connection attempts to an unreachable inference service: the gateway serves again "
        "within this (+20% jitter) of the service coming back, however long it was away",
        minimum=0.05,
    )
    auth_token: str | None = setting(
        None,
        "require 'Authorization: Bearer TOKEN' on every route but the health checks, /metrics and /openapi.json "
        "(off when unset)",
    )
    header_timeout_seconds: float = setting(
        10.0,
        "a request's headers must arrive within this time of the connection (or of the previous response, after "
        "the keep-alive idle time); else 408 and the connection is closed",
        above=0,
    )
    body_timeout_seconds: float = setting(
        30.0,
        "a request's body must arrive within this time of its headers (the request's deadline, --timeout-seconds "
        "or X-Request-Timeout, caps it too); else 408 and the connection is closed",
        above=0,
    )
    keep_alive_timeout_seconds: int = setting(5, "idle keep-alive connections are closed after this", minimum=1)
    max_connections: int = setting(
        1000,
        "open client connections at most; at the limit a new connection replaces the one whose client has "
        "waited longest without sending its whole request, or gets 503 when all are being served",
        minimum=1,
    )
    max_connections_per_client: int = setting(
        0,
        "open connections per client address at most, more get 429 (0: no limit; keep 0 behind a proxy or load "
        "balancer, where every client has the proxy's address)",
        minimum=0,
    )
    tls_cert: Path | None = setting(None, "PEM certificate chain: serve HTTPS")
    tls_key: Path | None = setting(None, "PEM private key for --tls-cert")
    tls_client_ca: Path | None = setting(
        None, "PEM roots: require a client certificate they signed on every connection (mTLS; needs --tls-cert)"
    )
    inference_auth_token: str | None = setting(
        None,
        "bearer token the gateway presents to the inference service (metadata 'authorization: Bearer TOKEN'; "
        "its --auth-token; prefer the variable: flags show in process lists)",
    )
    inference_tls: bool = setting(
        False,
        "connect to the inference service over TLS, verified by the system's roots unless --inference-ca is given "
        "(implied by --inference-ca and --inference-cert)",
    )
    inference_ca: Path | None = setting(None, "PEM roots that verify the inference service's certificate")
    inference_cert: Path | None = setting(
        None, "PEM client certificate chain the gateway presents to the inference service (mTLS)"
    )
    inference_key: Path | None = setting(None, "PEM private key for --inference-cert")
    shutdown_grace_seconds: float = setting(10.0, "time in-flight requests get to finish after SIGTERM", minimum=0)
    retry_after_seconds: int = setting(
        1, "Retry-After sent with 429/503 when the inference service suggests none", minimum=0
    )
    coalesce_max_images: int = setting(
        8,
        "under load, up to this many one-image requests for the same model share one call to the inference "
        "service (1: coalescing off)",
        minimum=1,
    )
    coalesce_max_in_flight: int = setting(
        4, "requests are sent alone while fewer calls than this are outstanding for their model", minimum=1
    )
    console: bool = setting(
        True,
        "serve the web console at /console/ (GET / redirects there): try a model, the models, the Trainer's jobs, "
        "the API docs; its pages are public, the calls they make need --auth-token's token",
    )
    trainer: str = setting(
        "", "gRPC target of the Trainer service, HOST:PORT, for the console's Jobs page (empty: no Jobs page)"
    )
    trainer_auth_token: str | None = setting(
        None, "bearer token the gateway presents to the Trainer (its --auth-token; prefer the variable)"
    )

    def __post_init__(self) -> None:
        check(self)
        if not self.inference.strip():
            raise InvalidArgument("--inference (the inference service's target) must not be empty")
        if self.auth_token is not None and not self.auth_token.strip():
            raise InvalidArgument("--auth-token must not be blank (leave it unset to disable auth)")
        parse_format(self.default_accept)  # raises InvalidArgument for an unsupported type
        if self.trainer_auth_token is not None and not self.trainer_auth_token.strip():
            raise InvalidArgument("--trainer-auth-token must not be blank (leave it unset to send none)")
        if self.inference_auth_token is not None and not self.inference_auth_token.strip():
            raise InvalidArgument("--inference-auth-token must not be blank (leave it unset to send none)")
        _pair("--inference-cert", self.inference_cert, "--inference-key", self.inference_key)
        _pair("--tls-cert", self.tls_cert, "--tls-key", self.tls_key)
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key (client certificates need TLS)")
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--tls-client-ca", self.tls_client_ca),
            ("--inference-ca", self.inference_ca),
            ("--inference-cert", self.inference_cert),
            ("--inference-key", self.inference_key),
        ):
            _readable(flag, path)

    @property
    def inference_uses_tls(self) -> bool:
        return self.inference_tls or self.inference_ca is not None or self.inference_cert is not None


def _pair(flag: str, value: Path | None, other_flag: str, other: Path | None) -> None:
    if (value is None) != (other is None):
        raise InvalidArgument(f"{flag} and {other_flag} go together: give both or neither")


def _readable(flag: str, path: Path | None) -> None:
    if path is not None and not path.is_file():
        raise InvalidArgument(f"{flag} {path} is not a file")
