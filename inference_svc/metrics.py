"""Prometheus metrics of the inference service, in a registry of its own per server.

The names are a contract: the deploy manifests and the HorizontalPodAutoscaler read
``tfic_inference_queue_depth`` and ``tfic_inference_in_flight_requests``. Latencies are
histograms (not summaries) so percentiles aggregate across pods. The ``model`` label only takes
names the repository serves (others are counted as ``_unknown``), so clients cannot grow the
number of series.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tfic.errors import status_for
from tfic.metric_children import LabelChildren

log = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"

_LATENCY = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_DECODE = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_QUEUE = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# gRPC cancels a handler when its deadline expires, exactly as when the client goes away; the two are told
# apart by the deadline the handler saw (``context.time_remaining()`` at its start, so it may run a little
# late against the transport's own clock).
DEADLINE_SLACK_SECONDS = 0.01


def cancel_reason(deadline: float | None, now: float | None = None) -> str:
    """Why work whose caller stopped waiting was abandoned: ``deadline`` if its deadline had come, else
    ``cancelled`` (the client went away)."""
    if deadline is None:
        return "cancelled"
    return (
        "deadline" if (time.monotonic() if now is None else now) >= deadline - DEADLINE_SLACK_SECONDS else "cancelled"
    )


_PADDING = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tfic_inference_requests_total",
            "Requests by model, method and status code",
            ["model", "method", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "tfic_inference_request_duration_seconds",
            "End-to-end handling time of a request",
            ["model", "method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "tfic_inference_decode_seconds", "Decoding and resizing one image", buckets=_DECODE, registry=r
        )
        self.queue_wait = Histogram(
            "tfic_inference_queue_wait_seconds",
            "Time a request waited for its batch to start",
            ["model"],
            buckets=_QUEUE,
            registry=r,
        )
        self.model_seconds = Histogram(
            "tfic_inference_model_seconds",
            "Time the runtime took for one batch",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "tfic_inference_batch_size", "Images in a batch, before padding", ["model"], buckets=_SIZES, registry=r
        )
        self.batch_padding = Histogram(
            "tfic_inference_batch_padding", "Padding images added to a batch", ["model"], buckets=_PADDING, registry=r
        )
        self.dropped = Counter(
            "tfic_inference_dropped_total",
            "Work skipped because its request's deadline passed or its caller went away, by stage "
            "(decode: images never decoded; batch: requests never run)",
            ["stage", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "tfic_inference_rejected_total",
            "Inference calls refused by admission control (--max-concurrent-requests) before their request was "
            "read, by method",
            ["method"],
            registry=r,
        )
        self.queue_depth = Gauge("tfic_inference_queue_depth", "Requests waiting for a batch", ["model"], registry=r)
        self.in_flight = Gauge("tfic_inference_in_flight_requests", "Requests being handled", registry=r)
        self.model_loads = Counter(
            "tfic_inference_model_loads_total", "Model version loads by outcome", ["model", "outcome"], registry=r
        )
        self.loaded_versions = Gauge(
            "tfic_inference_loaded_versions", "Versions available for traffic", ["model"], registry=r
        )
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self.child = LabelChildren()  # child(metric, *labels): metric.labels(*labels), cached for the hot path

    def count_dropped(self, stage: str, reason: str) -> None:
        """One unit of work skipped at ``stage`` (decode, batch) because of ``reason`` (deadline, cancelled)."""
        self.child(self.dropped, stage, reason).inc()

    def track(self, model: str, method: str, deadline: float | None = None) -> RequestTracker:
        """``with metrics.track(model, method, deadline):`` counts the request, its code and duration; a call
        cancelled at its ``deadline`` (``time.monotonic()``) counts as DEADLINE_EXCEEDED, as its client saw it."""
        return RequestTracker(self, model, method, deadline)

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP on a side port; returns the port bound."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = self._http.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class RequestTracker:
    __slots__ = ("_deadline", "_method", "_metrics", "_model", "_start")

    def __init__(self, metrics: Metrics, model: str, method: str, deadline: float | None = None) -> None:
        self._metrics = metrics
        self._model = model
        self._method = method
        self._deadline = deadline
        self._start = 0.0

    def __enter__(self) -> RequestTracker:
        self._start = time.perf_counter()
        self._metrics.in_flight.inc()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        m = self._metrics
        m.in_flight.dec()
        if exc is None:
            code = "OK"
        elif isinstance(exc, Exception):
            code = status_for(exc).grpc_code
        else:  # asyncio.CancelledError: the client went away, or its deadline expired
            code = "DEADLINE_EXCEEDED" if cancel_reason(self._deadline) == "deadline" else "CANCELLED"
        m.child(m.requests, self._model, self._method, code).inc()
        m.child(m.request_duration, self._model, self._method).observe(time.perf_counter() - self._start)
