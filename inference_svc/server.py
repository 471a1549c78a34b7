"""The grpc.aio server: our Classifier and TensorFlow Serving's APIs on one port.

Also on that port: gRPC health checking (service ``""`` is SERVING while the server is up;
``tfic.v1.Classifier`` and ``tensorflow.serving.PredictionService`` are SERVING once any model
version is AVAILABLE — the readiness probe — and each model name is SERVING once one of its
versions is), and server reflection. Keepalive and ``max_connection_age`` are set for
Kubernetes: idle connections are probed, and connections are recycled so clients spread over
new pods after a scale-up. On shutdown every health status turns NOT_SERVING, the server keeps
answering for ``drain_seconds`` (while load balancers notice), then stops accepting calls and
gives running ones ``shutdown_grace_seconds``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from grpc import aio
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from inference_svc import heap, priority
from inference_svc.accept import Accepters, HandlerRecorder
from inference_svc.admission import ADMITTED, AdmissionInterceptor
from inference_svc.metrics import Metrics
from inference_svc.predictor import Predictor
from inference_svc.preprocess import Preprocessor
from inference_svc.repository import ModelRepository, VersionState
from inference_svc.runtime.base import RuntimeFactory
from inference_svc.servicers.classifier import SERVICE_NAME as CLASSIFIER
from inference_svc.servicers.classifier import ClassifierServicer
from inference_svc.servicers.model_control import SERVICE_NAME as MODEL_CONTROL
from inference_svc.servicers.model_control import ModelControlServicer
from inference_svc.servicers.tfserving_api import MODEL_SERVICE, PREDICTION_SERVICE, ModelServicer, PredictionServicer
from inference_svc.settings import Settings, cpu_cores, intra_op_threads_per_batch
from tfic import grpc_security as security
from tfic.errors import FailedPrecondition
from tfic.grpc_errors import ErrorInterceptor
from tfic.v1 import classifier_pb2_grpc, model_control_pb2_grpc

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READINESS_SERVICES = (CLASSIFIER, PREDICTION_SERVICE)


class _ErrorInterceptor(ErrorInterceptor):
    """:class:`tfic.grpc_errors.ErrorInterceptor` for our services only.

    Health and reflection raise no tfic errors, and grpc's asyncio health ``Watch`` is a
    coroutine-style streaming handler (``context.write``) that the shared interceptor's
    async-generator wrapper would break, so their calls pass straight through. The wrapped
    handler of each method is built once and reused: building it per call (closures, a handler
    tuple, a coroutine) was a measurable share of the per-request cost.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is not None:
            return handler
        if method.startswith(_PASS_THROUGH):
            return await continuation(handler_call_details)
        handler = await super().intercept_service(continuation, handler_call_details)
        if handler is not None:  # only registered methods: the cache stays small
            self._handlers[method] = handler
        return handler


_PASS_THROUGH = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    ms = 1000
    return [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.max_send_message_length", settings.max_request_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_seconds * ms)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Accept client keepalive pings every 10 s or more without answering GOAWAY(too_many_pings).
        ("grpc.http2.min_ping_interval_without_data_ms", 10 * ms),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * ms)),
        ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_seconds * ms)),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
    ]


def default_runtime_factory(settings: Settings) -> RuntimeFactory:
    if settings.runtime == "tfserving":
        from inference_svc.runtime.remote_tfserving import TFServingClient

        return TFServingClient(
            settings.tfserving_target,
            settings.tfserving_timeout_seconds,
            settings.load_timeout_seconds,
            settings.max_request_bytes,
        )
    from inference_svc.runtime.tensorflow import TensorFlowOptions, TensorFlowRuntimeFactory

    return TensorFlowRuntimeFactory(
        TensorFlowOptions(
            settings.tf_intra_op_threads, settings.tf_inter_op_threads, settings.xla, settings.mixed_precision
        )
    )


class InferenceServer:
    """``await InferenceServer(settings).start()``; ``port`` and ``metrics_port`` are the bound ports."""

    def __init__(self, settings: Settings, runtime_factory: RuntimeFactory | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.port = 0
        self.metrics_port: int | None = None
        self._factory = runtime_factory if runtime_factory is not None else default_runtime_factory(settings)
        self.preprocessor = Preprocessor(
            settings.decode_workers,
            settings.limits,
            settings.use_draft,
            settings.max_decode_queue,
            self.metrics,
            pool=settings.decode_pool,
            priority=priority.data_plane(),
        )
        self.repository = ModelRepository(settings, self._factory, self.metrics, self._schedule_health)
        self.predictor = Predictor(self.repository, self.preprocessor, settings)
        self.health = health_aio.HealthServicer()
        self.admission = AdmissionInterceptor(settings.max_concurrent_requests, self.metrics)
        self.accepters = Accepters(settings.accept_depth)
        self._server: aio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._health_dirty = False
        self._known_models: set[str] = set()
        self._frozen_versions: frozenset[tuple[str, int]] | None = None
        self._stopping = False

    async def start(self) -> InferenceServer:
        s = self.settings
        credentials = security.server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)
        # Admission after the token check (a caller without the token learns nothing about the load) and before
        # anything reads the request.
        interceptors = [*security.interceptors(s.auth_token), self.admission, _ErrorInterceptor()]
        server = aio.server(interceptors=interceptors, options=grpc_options(s))
        # The generated add_*_to_server functions take anything with the two add_* methods; the recorder keeps
        # the handlers the extra accepters serve.
        handlers = HandlerRecorder(server)
        recorder = cast(aio.Server, handlers)
        classifier_pb2_grpc.add_ClassifierServicer_to_server(ClassifierServicer(self.predictor, self.metrics), recorder)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.predictor, self.metrics), recorder
        )
        handlers.register(ADMITTED)  # TensorFlow Serving's stubs register generic handlers only
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.predictor), server)
        model_control_pb2_grpc.add_ModelControlServicer_to_server(ModelControlServicer(self.repository), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            CLASSIFIER,
            PREDICTION_SERVICE,
            MODEL_SERVICE,
            MODEL_CONTROL,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        for service in READINESS_SERVICES:
            await self.health.set(service, NOT_SERVING)
        address = f"{s.host}:{s.port}"
        try:
            if credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise FailedPrecondition(f"cannot listen on {address}: {exc}") from None
        if self.port == 0:
            raise FailedPrecondition(f"cannot listen on {address} (in use?)")
        metrics_host = s.metrics_host or s.host
        if s.metrics_port >= 0:
            try:
                self.metrics_port = self.metrics.serve(metrics_host, s.metrics_port)
            except OSError as exc:
                raise FailedPrecondition(f"cannot serve metrics on {metrics_host}:{s.metrics_port}: {exc}") from None
        await self.preprocessor.start()  # before the first call can arrive
        await server.start()
        self._server = server
        self.accepters.start(server, handlers.registered, ADMITTED, interceptors)
        how = security.describe(s.tls_cert, s.tls_client_ca, s.auth_token)
        metrics = f"http://{metrics_host}:{self.metrics_port}/metrics" if self.metrics_port is not None else "off"
        # On stderr whatever the log level, as the gateway does: scripts and `tfic up` wait for this line.
        line = f"tfic inference service listening on {s.host}:{self.port} ({how}; metrics {metrics})"
        if s.port_file is not None:
            partial = s.port_file.with_name(s.port_file.name + ".partial")
            partial.write_text(f"{self.port}\n")
            partial.replace(s.port_file)  # atomic: a reader never sees a half-written port
        print(line, file=sys.stderr, flush=True)
        await self.repository.start()
        await self._update_health()
        return self

    async def stop(self, grace: float | None = None, drain: float = 0.0) -> None:
        """Health NOT_SERVING, keep serving for ``drain`` seconds, then stop with ``grace``."""
        if self._stopping:
            return
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        if drain > 0:
            log.info("draining for %.1f s", drain)
            await asyncio.sleep(drain)  # the drain period itself: load balancers see NOT_SERVING
        if self._server is not None:
            self.accepters.stop()
            await self._server.stop(grace)
        await self.repository.close()
        self.preprocessor.close()
        self.metrics.close()
        if self.settings.port_file is not None and self.port:
            self.settings.port_file.unlink(missing_ok=True)
        close = getattr(self._factory, "close", None)
        if close is not None:
            close()
        log.info("inference service stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def _schedule_health(self) -> None:
        """Repository callback (on the loop): recompute health statuses once, soon."""
        self._health_dirty = True
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.ensure_future(self._update_health())

    async def _update_health(self) -> None:
        while True:
            self._health_dirty = False
            ready = self.repository.available()
            for service in READINESS_SERVICES:
                await self.health.set(service, SERVING if ready else NOT_SERVING)
            models = {m.name for m in self.repository.models()}
            for name in models | self._known_models:
                await self.health.set(name, SERVING if self.repository.available(name) else NOT_SERVING)
            self._known_models |= models
            if not self._health_dirty:
                self._freeze_when_settled()
                return

    def _freeze_when_settled(self) -> None:
        """:func:`inference_svc.heap.freeze` once the loaded versions changed and none is loading or unloading."""
        versions = [(m.name, v.version, v.state) for m in self.repository.models() for v in m.versions]
        if any(state in (VersionState.LOADING, VersionState.UNLOADING) for _, _, state in versions):
            return
        loaded = frozenset((name, version) for name, version, state in versions if state is VersionState.AVAILABLE)
        if loaded != self._frozen_versions:
            self._frozen_versions = loaded
            heap.freeze()


def process_settings(settings: Settings) -> Settings:
    """``settings`` with the process-wide defaults an entry point resolves: TensorFlow's intra-op pool (0) sized
    to one share of the cores per batch thread. Like thread priorities these are the whole process's, so an
    embedded server (tests, a notebook) keeps its host's TensorFlow as it is."""
    if settings.runtime != "tensorflow" or settings.tf_intra_op_threads:
        return settings
    cores, batch_threads = cpu_cores(), settings.batching.num_batch_threads
    threads = intra_op_threads_per_batch(cores, batch_threads)
    log.info("TensorFlow intra-op threads: %d (%d cores / %d batch threads)", threads, cores, batch_threads)
    return dataclasses.replace(settings, tf_intra_op_threads=threads)


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    log.info("event loop %s", "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio")
    # Thread priorities are the process's (TensorFlow's pools are shared by everything in it), so only the
    # entry point that owns the process sets them, before the first data-plane thread starts; a server
    # embedded in another program (the tests, a notebook) leaves that program's threads alone.
    priority.configure(settings.data_plane_niceness, idle=settings.data_plane_policy == "idle")
    server = InferenceServer(process_settings(settings))
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutdown requested")
    await server.stop(grace=settings.shutdown_grace_seconds, drain=settings.drain_seconds)
    return 0
