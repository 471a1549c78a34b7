"""Container health check for the tfic images: one gRPC health (grpc.health.v1) or HTTP GET probe.

Docker's HEALTHCHECK and, where kubelet's native probes cannot be used (a TLS-only gRPC port), a
Kubernetes ``exec`` probe run this with the image's Python. Exit status 0 means healthy, 1 not.

    python healthcheck.py grpc PORT [SERVICE] [--tls-ca FILE] [--server-name NAME]
    python healthcheck.py http PORT PATH
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def check_grpc(
    port: int,
    service: str = "",
    *,
    host: str = "127.0.0.1",
    timeout: float = 3.0,
    tls_ca: Path | None = None,
    server_name: str | None = None,
) -> bool:
    """True when the server's Health/Check says SERVING for ``service`` ("" is the whole server)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"{host}:{port}"
    if tls_ca is not None:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(tls_ca.read_bytes()), options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {target} {service!r}: {exc.code().name}", file=sys.stderr)
            return False
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"unhealthy: {target} {service!r}: {status}", file=sys.stderr)
        return False
    return True


def check_http(port: int, path: str, *, host: str = "127.0.0.1", timeout: float = 3.0) -> bool:
    """True when ``GET http://host:port/path`` answers 2xx."""
    url = f"http://{host}:{port}/{path.lstrip('/')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return False
    return 200 <= status < 300


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    kinds = parser.add_subparsers(dest="kind", required=True)
    g = kinds.add_parser("grpc", help="grpc.health.v1 Health/Check")
    g.add_argument("port", type=int)
    g.add_argument("service", nargs="?", default="", help='health service name ("" = the whole server)')
    g.add_argument("--tls-ca", type=Path, help="PEM roots to verify a TLS server with (plaintext if absent)")
    g.add_argument("--server-name", help="the name the server's certificate is for (default: the host)")
    h = kinds.add_parser("http", help="HTTP GET, healthy on 2xx")
    h.add_argument("port", type=int)
    h.add_argument("path")
    args = parser.parse_args(argv)
    if args.kind == "grpc":
        ok = check_grpc(
            args.port,
            args.service,
            host=args.host,
            timeout=args.timeout,
            tls_ca=args.tls_ca,
            server_name=args.server_name,
        )
    else:
        ok = check_http(args.port, args.path, host=args.host, timeout=args.timeout)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
