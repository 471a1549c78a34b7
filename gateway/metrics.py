"""The gateway's Prometheus metrics, in a registry of their own (one per app, so tests can run several).

Labels stay low-cardinality: ``route`` is the route template (``/models/{name}/invocations``), never the raw
path, and unmatched paths share ``route="unmatched"``; model names are not labels because callers choose them.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tfic.errors import FailedPrecondition
from tfic.metric_children import LabelChildren

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"

# Latencies that matter for a classification front: sub-ms overhead up to the 60 s default deadline.
COALESCED_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._side: WSGIServer | None = None
        self._requests = Counter(
            "tfic_gateway_requests",
            "HTTP requests by route template and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "tfic_gateway_request_duration_seconds",
            "Time from the first byte of a request to its last response byte, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("tfic_gateway_requests_in_flight", "HTTP requests being served.", registry=self.registry)
        self._upstream = Histogram(
            "tfic_gateway_upstream_duration_seconds",
            "Duration of calls to the inference service by gRPC method and status code.",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._coalesced = Histogram(
            "tfic_gateway_upstream_images_per_call",
            "Images per Classify call to the inference service from one-image requests (above 1: coalesced).",
            buckets=COALESCED_BUCKETS,
            registry=self.registry,
        )
        self.connections = Gauge(
            "tfic_gateway_connections", "Open client connections (at most --max-connections).", registry=self.registry
        )
        self._connections_closed = Counter(
            "tfic_gateway_connections_closed",
            "Connections the gateway closed on its own, by reason: header_timeout, shed (at --max-connections, "
            "the slowest client's), refused_limit, refused_per_client.",
            ["reason"],
            registry=self.registry,
        )
        self._child = LabelChildren()

    def observe_request(self, route: str, code: int, seconds: float) -> None:
        self._child(self._requests, route, str(code)).inc()
        self._child(self._duration, route).observe(seconds)

    def observe_upstream(self, method: str, code: str, seconds: float) -> None:
        self._child(self._upstream, method, code).observe(seconds)

    def observe_connection_closed(self, reason: str) -> None:
        self._child(self._connections_closed, reason).inc()

    def observe_coalesced(self, images: int) -> None:
        self._coalesced.observe(images)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` on a port of its own (prometheus_client's HTTP server, a thread); the bound port.

        Serving already: that port (the entry point binds it before uvicorn starts, see gateway.main.run).
        """
        if self._side is None:
            try:
                self._side, _thread = start_http_server(port, addr=host, registry=self.registry)
            except OSError as exc:  # in use, or an address this host does not have
                raise FailedPrecondition(f"cannot serve metrics on {host}:{port}: {exc}") from None
        return int(self._side.server_port)

    def close(self) -> None:
        side, self._side = self._side, None
        if side is not None:
            side.shutdown()
            side.server_close()
