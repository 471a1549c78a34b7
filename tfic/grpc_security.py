"""A gRPC server's transport security, one definition for every tfic service: TLS (optionally requiring client
certificates) and a bearer token.

The inference service and the Trainer declare the same four settings (``--tls-cert``, ``--tls-key``,
``--tls-client-ca``, ``--auth-token``, each under its own ``TFIC_<SERVICE>_`` variable) with the help texts
below, check them with :func:`check_settings` and build the server from :func:`server_credentials` and
:class:`BearerTokenInterceptor`.

What needs no token, deliberately (:data:`EXEMPT_PREFIXES`): gRPC health checking, which kubelet's probes and
load balancers call without credentials and which tells nothing but SERVING/NOT_SERVING, and server reflection,
which describes the public protos any client already has. Neither reaches a model, a job or a file. TLS, when
on, covers every call on the port, health and reflection included. The Prometheus ``/metrics`` endpoint is not
on the gRPC port at all: it is plain HTTP on its own port and bind address (each service's ``--metrics-port``
and ``--metrics-host``), kept off the network by the bind address or a NetworkPolicy.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from tfic.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from tfic.grpc_errors import abort
from tfic.grpc_typing import ServerInterceptor

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
EXEMPT_PREFIXES = (HEALTH_PREFIX, REFLECTION_PREFIX)
MESSAGE = "missing or wrong bearer token: send the metadata 'authorization: Bearer <token>'"

# The settings' help texts, shared so the services' --help and docs rows say the same.
TLS_CERT_HELP = "PEM certificate chain: serve TLS (with --tls-key)"
TLS_KEY_HELP = "PEM private key for --tls-cert"
TLS_CLIENT_CA_HELP = (
    "PEM CA certificates: with TLS, require a client certificate signed by one of them (mutual TLS; off when unset)"
)
AUTH_TOKEN_HELP = (
    "require 'authorization: Bearer TOKEN' on every RPC but health checks and reflection (prefer the variable: "
    "flags show in process lists)"
)


def check_settings(
    tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None, auth_token: str | None
) -> None:
    """Refuse a half-configured security setting at start-up (before anything binds)."""
    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    if tls_client_ca is not None and tls_cert is None:
        raise InvalidArgument("--tls-client-ca needs TLS: set --tls-cert and --tls-key too")
    if auth_token is not None and not auth_token.strip():
        raise InvalidArgument("--auth-token must not be blank (leave it unset to disable auth)")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FailedPrecondition(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def server_credentials(
    tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None = None
) -> grpc.ServerCredentials | None:
    """TLS credentials for ``add_secure_port`` (None: plaintext); with ``tls_client_ca``, mutual TLS."""
    check_settings(tls_cert, tls_key, tls_client_ca, None)
    if tls_cert is None or tls_key is None:
        return None
    pair = (_read(tls_key, "TLS key"), _read(tls_cert, "TLS certificate"))
    if tls_client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_read(tls_client_ca, "client CA"), require_client_auth=True
    )


def describe(tls_cert: Path | None, tls_client_ca: Path | None, auth_token: str | None) -> str:
    """How the port is protected, for the listening line: ``mutual TLS, bearer token`` or ``plaintext, no token``."""
    transport = "plaintext" if tls_cert is None else ("mutual TLS" if tls_client_ca is not None else "TLS")
    return f"{transport}, {'bearer token' if auth_token else 'no token'}"


def interceptors(auth_token: str | None) -> list[ServerInterceptor]:
    """The interceptors to put first (before the error interceptor): the token check when a token is set."""
    return [BearerTokenInterceptor(auth_token)] if auth_token else []


def _denied(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await abort(context, Unauthenticated(MESSAGE))  # the same Status as any other error

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(deny, des, ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(deny, des, ser)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(deny, des, ser)
    return grpc.stream_stream_rpc_method_handler(deny, des, ser)


class BearerTokenInterceptor(ServerInterceptor):
    """Every RPC but :data:`EXEMPT_PREFIXES` needs ``authorization: Bearer <token>`` (compared in constant time),
    else UNAUTHENTICATED before the servicer runs."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._denied: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key.lower() == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES) or self._authorized(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        denied = self._denied.get(method)
        if denied is None:
            denied = self._denied[method] = _denied(handler)  # only registered methods: the cache stays small
        return denied
