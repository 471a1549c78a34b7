"""What one client connection may hold: a header deadline, and its share of the connection caps.

uvicorn has no header-read timeout (a client that trickles its headers, or sends nothing, is held forever)
and no cap on connections: ``limit_concurrency`` only answers 503 once a request's headers are complete,
so connections that never complete them are never counted against it. :class:`GuardedProtocol` is uvicorn's
httptools protocol with both, shared through one :class:`ConnectionGuard` per server:

* **Header deadline.** A request's headers must be complete within ``--header-timeout-seconds`` of the
  connection being made, or of the previous response on a keep-alive connection (plus
  ``--keep-alive-timeout-seconds``, the idle time uvicorn allows; a silent idle connection is closed by
  uvicorn's own keep-alive timer). Otherwise the connection is closed, after a 408 with the JSON error body
  if a request had begun.
* **Connection cap.** At most ``--max-connections`` are open. At the cap, a new connection takes the place
  of the connection that has waited longest for a client that has not finished sending its request
  (headers or body not complete, or nothing sent yet); failing that, of the longest-idle keep-alive
  connection. Slow clients are shed oldest first, so normal requests, which finish sending within
  milliseconds, keep being served. When every connection is busy with a request the gateway is serving,
  or the longest wait is under half a second (a flood of new connections, not slow ones), the new one is
  refused with 503.
* **Per client.** With ``--max-connections-per-client``, a client address holding that many connections
  has its next one refused with 429.

The body's deadline is set by the app, which knows the request's own deadline (:func:`gateway.inputs.read_body`
puts it in the scope); the sweep here wakes a read that waits past it. Everything runs on the server's event
loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import ConnectionLimit, RequestTimeout, TooManyConnections, error_response
from gateway.inputs import BODY_DEADLINE_KEY, BODY_TIMED_OUT_KEY
from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings
from tfic.errors import TficError

log = logging.getLogger(__name__)

SHED_MIN_WAIT = 0.5  # seconds a connection has waited on its client before it may be shed
# Deadlines are checked by one sweep over the waiting connections this often, not by a timer each: a timer
# per request cost ~10 µs on uvloop, a third of the invocation path's own work.
SWEEP_SECONDS = 0.1


class ConnectionGuard:
    """The caps and deadlines of one server's connections (one event loop: no locks)."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.max_connections = settings.max_connections
        self.max_per_client = settings.max_connections_per_client
        self.header_timeout = settings.header_timeout_seconds
        self.keep_alive_timeout = float(settings.keep_alive_timeout_seconds)
        self.retry_after = settings.retry_after_seconds
        self.metrics = metrics
        self.open: set[GuardedProtocol] = set()
        # Connections waiting on their client, the longest-waiting first (dicts keep insertion order):
        # those sending a request (or nothing yet, just connected), and those idle between requests.
        self.sending: dict[GuardedProtocol, None] = {}
        self.idle: dict[GuardedProtocol, None] = {}
        self.by_client: dict[str, int] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def admit(self, conn: GuardedProtocol) -> bool:
        """Count a new connection in, shedding or refusing as the caps say; False if it was refused."""
        address = conn.client[0] if conn.client else ""
        if self.max_per_client and self.by_client.get(address, 0) >= self.max_per_client:
            self.metrics.observe_connection_closed("refused_per_client")
            conn.refuse(TooManyConnections(f"too many connections from {address}; the limit is {self.max_per_client}"))
            return False
        if len(self.open) >= self.max_connections:
            # Idle keep-alive connections go only when no client is mid-request: their clients are fast ones,
            # and one may be sending its next request as the connection closes, which it would see fail.
            waiting = self.sending or self.idle
            victim = next(iter(waiting), None)
            # One that has waited only a moment may be a normal client whose request is on its way.
            if victim is None or time.monotonic() - victim.waiting_since < SHED_MIN_WAIT:
                self.metrics.observe_connection_closed("refused_limit")
                conn.refuse(ConnectionLimit(f"the gateway is at its limit of {self.max_connections} connections"))
                return False
            self.metrics.observe_connection_closed("shed")
            victim.shed()
        conn.address = address
        self.open.add(conn)
        self.by_client[address] = self.by_client.get(address, 0) + 1
        self.metrics.connections.set(len(self.open))
        self.wait(conn, self.header_timeout)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(SWEEP_SECONDS, self._sweep, conn.loop)
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        for conn in [*self.sending, *self.idle]:
            conn.check_deadlines(now)
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep, loop) if self.open else None

    def wait(self, conn: GuardedProtocol, timeout: float | None, *, idle: bool = False) -> None:
        """The connection now waits on its client (to the back of the line), sending a request or ``idle``
        between two; ``timeout`` (re)arms its deadline."""
        if conn not in self.open:
            return
        self.received(conn)
        (self.idle if idle else self.sending)[conn] = None
        conn.waiting_since = time.monotonic()
        if timeout is not None:
            conn.arm(timeout)

    def received(self, conn: GuardedProtocol) -> None:
        """The client finished sending its request: the gateway, not the client, is the one working now."""
        self.sending.pop(conn, None)
        self.idle.pop(conn, None)

    def release(self, conn: GuardedProtocol) -> None:
        """Count a connection out (idempotent: a shed connection is counted out before it has closed)."""
        conn.disarm()
        if conn not in self.open:
            return
        self.open.discard(conn)
        self.received(conn)
        left = self.by_client.get(conn.address, 1) - 1
        if left:
            self.by_client[conn.address] = left
        else:
            self.by_client.pop(conn.address, None)
        self.metrics.connections.set(len(self.open))


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the connection caps of :class:`ConnectionGuard`.

    Use :func:`protocol_class` to get one bound to a guard (uvicorn builds its protocols from a class).
    """

    guard: ClassVar[ConnectionGuard]
    address = ""
    waiting_since = 0.0  # time.monotonic() when it started waiting on its client
    header_deadline = math.inf  # time.monotonic() by which the next request's headers must be complete
    _in_headers = False  # a request has begun and its headers are not complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self.guard.wait(self, None)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self.disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.guard.received(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # Idle, then the next request's headers: uvicorn's keep-alive timer closes a silent connection;
            # this one catches a client that keeps it open by trickling bytes.
            self.guard.wait(self, self.guard.keep_alive_timeout + self.guard.header_timeout, idle=True)

    # -- deadlines and refusals

    def arm(self, timeout: float) -> None:
        self.header_deadline = time.monotonic() + timeout

    def disarm(self) -> None:
        self.header_deadline = math.inf

    def check_deadlines(self, now: float) -> None:
        """The header deadline, and the body deadline the app set (:func:`gateway.inputs.read_body`): a body
        late while the app waits for it wakes the app, which answers 408."""
        if now >= self.header_deadline:
            self._headers_timed_out()
            return
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_started:
            return
        scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]  # the app's keys are not in uvicorn's TypedDict
        deadline = scope.get(BODY_DEADLINE_KEY)
        if deadline is not None and now >= deadline and not scope.get(BODY_TIMED_OUT_KEY):
            scope[BODY_TIMED_OUT_KEY] = True
            cycle.message_event.set()

    def _headers_timed_out(self) -> None:
        self.disarm()
        self.guard.metrics.observe_connection_closed("header_timeout")
        timeout = self.guard.header_timeout
        self._answer_and_close(RequestTimeout(f"the request's headers did not arrive within {timeout:g} s"))

    def shed(self) -> None:
        """Close this connection to make room for a new one (its client was the slowest to send)."""
        self.guard.release(self)
        self._answer_and_close(ConnectionLimit("the gateway is at its connection limit and this request was too slow"))

    def refuse(self, exc: TficError) -> None:
        """Refuse a new connection: the answer is written at once, before the client has sent anything (it
        is the answer to the request it is about to send)."""
        self.transport.write(_raw_response(exc, self.guard.retry_after))
        self.transport.close()

    def _answer_and_close(self, exc: TficError) -> None:
        """Send ``exc``'s error response if the client is sending a request's headers, then close.

        Idle connections are closed without a word (a response nobody asked for would be read as the answer
        to the client's next request), and so are those whose request the app is handling (it sees the
        disconnect).
        """
        if self.transport.is_closing():
            return
        if self._in_headers:
            self.transport.write(_raw_response(exc, self.guard.retry_after))
        self.transport.close()


def _raw_response(exc: TficError, retry_after: int) -> bytes:
    """The gateway's JSON error response for ``exc`` as bytes on the wire (outside any ASGI request)."""
    response = error_response(exc, retry_after_seconds=retry_after)
    head = [STATUS_LINE[response.status_code]]
    head.extend(name + b": " + value + b"\r\n" for name, value in response.raw_headers)
    head.append(b"\r\n")
    return b"".join(head) + bytes(response.body)


def protocol_class(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` bound to ``guard``, for ``uvicorn.Config(http=...)``."""
    attributes: dict[str, Any] = {"guard": guard}
    return type("GatewayHttpProtocol", (GuardedProtocol,), attributes)
