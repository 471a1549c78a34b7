"""The Trainer gRPC server: grpc.aio, health checking, reflection, optional TLS and bearer token.

Start-up happens in two steps so health checks tell the truth: :meth:`TrainerServer.listen` binds
the port with health NOT_SERVING, :meth:`TrainerServer.open` opens the job store, recovers
interrupted jobs and turns health SERVING. Shutdown (SIGTERM) is the reverse: health NOT_SERVING,
running jobs stopped at a checkpoint (they resume on the next start), in-flight RPCs drained.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
from pathlib import Path
from typing import IO, Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tfic import grpc_security as security
from tfic.errors import FailedPrecondition
from tfic.grpc_errors import ErrorInterceptor
from tfic.grpc_typing import ServerInterceptor
from tfic.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_svc.service.metrics import TrainerMetrics
from trainer_svc.service.runner import JobRunner
from trainer_svc.service.servicer import TrainerServicer
from trainer_svc.service.settings import TrainerSettings
from trainer_svc.service.store import JobStore, SqliteJobStore

log = logging.getLogger(__name__)

SERVICE_NAME: str = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name
HEALTH_SERVICES = ("", SERVICE_NAME)


def _lock_state_dir(state_dir: Path) -> IO[bytes]:
    """One server per state directory: a second one would run every job twice. The kernel drops the
    lock when this process dies, however it dies."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / "trainer.lock", "wb")  # noqa: SIM115 - held for the server's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise FailedPrecondition(f"another trainer is already using the state directory {state_dir}") from None
    return handle


class TrainerServer:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.metrics = TrainerMetrics()
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.servicer = TrainerServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.runner: JobRunner | None = None
        self._server: aio.Server | None = None
        self._store: JobStore | None = None
        self._metrics_http: Any = None
        self._stopped = False
        self._state_lock: IO[bytes] | None = None

    async def listen(self) -> int:
        """Bind and serve with health NOT_SERVING; returns the port (useful with port 0)."""
        s = self.settings
        interceptors: list[ServerInterceptor] = [*security.interceptors(s.auth_token), ErrorInterceptor()]
        server = aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        trainer_pb2_grpc.add_TrainerServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
        for name in HEALTH_SERVICES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{self.settings.host}:{self.settings.port}"
        credentials = security.server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca)
        try:
            port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        except RuntimeError as exc:
            raise FailedPrecondition(f"cannot listen on {address}: {exc}") from None
        if port == 0:
            raise FailedPrecondition(f"cannot listen on {address} (in use?)")
        await server.start()
        self._server, self.port = server, port
        if self.settings.metrics_port is not None:
            self._metrics_http, self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
        log.info(
            "tfic trainer listening on %s:%d (%s, metrics on port %s)",
            self.settings.host, port, security.describe(s.tls_cert, s.tls_client_ca, s.auth_token), self.metrics_port,
        )  # fmt: skip
        return port

    async def open(self) -> None:
        """Open the store, recover interrupted jobs, start the queue; health turns SERVING."""
        loop = asyncio.get_running_loop()
        self._state_lock = _lock_state_dir(self.settings.state_dir)
        self._store = await loop.run_in_executor(None, SqliteJobStore, self.settings.database)
        runner = JobRunner(self._store, self.settings, self.metrics)
        await runner.start()
        self.runner = self.servicer.runner = runner
        for name in HEALTH_SERVICES:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.settings.port_file is not None:
            partial = self.settings.port_file.with_name(self.settings.port_file.name + ".partial")
            partial.write_text(f"{self.port}\n")
            partial.replace(self.settings.port_file)
        log.info("job store %s open; serving", self.settings.database)

    async def start(self) -> int:
        port = await self.listen()
        await self.open()
        return port

    async def drain(self) -> None:
        """Health NOT_SERVING for good, then stop the running jobs at a checkpoint."""
        await self.health.enter_graceful_shutdown()
        if self.runner is not None:
            await self.runner.shutdown()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(self.settings.shutdown_grace_seconds)
        if self.runner is not None:
            self.runner.close()
        if self._store is not None:
            self._store.close()
        if self.settings.port_file is not None and self.port is not None:
            self.settings.port_file.unlink(missing_ok=True)
        if self._state_lock is not None:
            self._state_lock.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.drain()
        await self.close()


async def serve(settings: TrainerSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = TrainerServer(settings)
    try:
        await server.start()
        await stopping.wait()
        log.info("shutting down")
    finally:
        await server.stop()
