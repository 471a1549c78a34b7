"""Prometheus metrics of the Trainer service, in a registry of their own, served on a side port."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

from trainer_svc.service.jobs import JobState


class TrainerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Gauge("tfic_trainer_jobs", "Training jobs by state", ["state"], registry=self.registry)
        self.job_duration = Histogram(
            "tfic_trainer_job_duration_seconds",
            "Wall time from a job's start to its end (Completed, Failed or Stopped)",
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
            registry=self.registry,
        )
        self.epoch_duration = Histogram(
            "tfic_trainer_epoch_duration_seconds",
            "Time per training epoch",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
            registry=self.registry,
        )
        self.images_per_second = Gauge(
            "tfic_trainer_images_per_second", "Training throughput of the last finished epoch", registry=self.registry
        )
        self.queue_length = Gauge(
            "tfic_trainer_queue_length", "Pending jobs waiting for a worker slot", registry=self.registry
        )

    def set_job_counts(self, counts: Mapping[JobState, int]) -> None:
        for state in JobState:
            self.jobs.labels(state=state.value).set(counts.get(state, 0))

    def serve(self, host: str, port: int) -> tuple[object, int]:
        """Start the /metrics HTTP endpoint in a daemon thread; returns (server, bound port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_port)
