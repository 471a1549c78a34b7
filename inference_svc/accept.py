"""More calls accepted at once: ``depth`` extra requests outstanding in gRPC's core per inference method.

grpc.aio's server asks gRPC's core for the next call of each method one at a time: it waits for a call, hands
it to a task and only then asks again (``_server_main_loop`` in grpc's ``aio/server.pyx.pxi``). Each ask and
its answer cross the completion-queue poller thread and several turns of the event loop. When a batch's answers
go out, its clients send their next calls together, and the core holds them in a queue that Python drains one
call per round trip: measured under saturation (200 clients, limit 32, 2 cores), a refusal waited while 3
(median) to 25 (p99) other calls were accepted before it. Here ``depth`` tasks per method each keep one more
request outstanding, so the core matches a burst at once and the whole burst reaches Python in one turn of
the loop, the refusals with it.

This uses grpc.aio internals (``AioServer._request_registered_call``, ``cygrpc._handle_rpc``,
``_schedule_rpc_coro``, ``_MethodResolver``), the same calls its own loop makes. :func:`supported` checks them
(names and signatures) against the installed grpcio; where they differ the server logs a warning and keeps
gRPC's own single accept, which is correct, only slower to drain a burst.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

import grpc
from grpc import aio

log = logging.getLogger(__name__)

cygrpc: Any  # grpc's Cython core, untyped
try:
    cygrpc = importlib.import_module("grpc._cython.cygrpc")
except ImportError:  # pragma: no cover - grpcio always ships it
    cygrpc = None

_HANDLE_RPC = ["method_name", "method_resolver", "interceptors", "rpc_state", "loop", "concurrency_exceeded"]
_SCHEDULE = ["rpc_coro", "rpc_state", "loop", "method_name"]


def _parameters(fn: Any) -> list[str] | None:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def supported() -> bool:
    """Whether the installed grpcio has the internals this module calls, as this module calls them."""
    if cygrpc is None:
        return False
    needed = ("_handle_rpc", "_schedule_rpc_coro", "_MethodResolver", "AioServer", "_RequestCallError")
    if not all(hasattr(cygrpc, name) for name in needed):
        return False
    if not hasattr(cygrpc.AioServer, "_request_registered_call"):
        return False
    return _parameters(cygrpc._handle_rpc) == _HANDLE_RPC and _parameters(cygrpc._schedule_rpc_coro) == _SCHEDULE


class HandlerRecorder:
    """Stands in for the server while the ``add_*_to_server`` functions register handlers, and keeps them."""

    def __init__(self, server: aio.Server) -> None:
        self.server = server
        self.registered: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self.server.add_generic_rpc_handlers(tuple(handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.registered.update({f"/{service}/{method}": handler for method, handler in handlers.items()})
        # grpc-stubs do not declare it on aio.Server yet; generated code calls it.
        cast(Any, self.server).add_registered_method_handlers(service, dict(handlers))


class Accepters:
    """``start(server, …)`` after ``server.start()``; ``stop()`` before ``server.stop()``."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.accepted = 0  # calls these tasks accepted (gRPC's own loop accepts the rest)
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(
        self,
        server: aio.Server,
        handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]],
        methods: Iterable[str],
        interceptors: Iterable[Any],
    ) -> bool:
        """Whether the extra accepts are running (false with ``depth`` 0 or an unsupported grpcio)."""
        if self.depth <= 0:
            return False
        if not supported():
            log.warning(
                "grpcio %s's server internals differ from what tfic knows: calls are accepted one at a time "
                "(--accept-depth has no effect)",
                grpc.__version__,
            )
            return False
        core = getattr(server, "_server", None)
        if core is None or not isinstance(core, cygrpc.AioServer):
            log.warning("not a grpc.aio server: --accept-depth has no effect")
            return False
        loop = asyncio.get_running_loop()
        chain = tuple(interceptors)
        for method in methods:
            handler = handlers.get(method)
            if handler is None:
                continue
            resolver = cygrpc._MethodResolver([], {method: handler})
            for _ in range(self.depth):
                task = loop.create_task(self._accept(core, method, resolver, chain, loop), name=f"accept {method}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return True

    async def _accept(
        self, core: Any, method: str, resolver: Any, interceptors: tuple[Any, ...], loop: asyncio.AbstractEventLoop
    ) -> None:
        name = method.encode()
        while not self._stopping:
            try:
                state = await core._request_registered_call(name)
            except cygrpc._RequestCallError:
                return  # the server is shutting down: the core failed the outstanding request
            except Exception:  # a synchronous refusal from the core: retrying would spin
                if not self._stopping:
                    log.exception("accepting %s failed; gRPC's own accept goes on", method)
                return
            self.accepted += 1
            # What grpc.aio's loop does with each call it accepts (the limiter is not used: admission is ours).
            coro = cygrpc._handle_rpc(method, resolver, interceptors, state, loop, False)
            task = loop.create_task(cygrpc._schedule_rpc_coro(coro, state, loop, method), name="rpc_task")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """No more re-arming: the requests still outstanding fail when the server shuts down."""
        self._stopping = True
