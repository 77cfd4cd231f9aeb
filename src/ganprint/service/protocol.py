"""uvicorn's HTTP protocol with the service's connection rules: TCP_NODELAY, deadlines for slow clients, a
connection limit, and access-log lines without query strings.

TCP_NODELAY. asyncio turns Nagle's algorithm off only on sockets whose Python object says IPPROTO_TCP. uvicorn < 0.55
binds the listening socket of N `workers` with proto 0, so its connections kept Nagle on, and every keep-alive
request waited for the client's delayed ACK (measured in benchmarks/perf/RESULTS-service.md). `ganprint serve` names
this class to uvicorn (as an import string, so only the workers import it), whatever uvicorn's version and however
the socket was made.

Slow clients. uvicorn (0.55, h11 or httptools) closes an idle keep-alive connection after `timeout_keep_alive`, but
sets no deadline on a request's headers or body: a client that sends half its headers, or stops in the middle of an
upload, holds its connection (and the upload's spooled temporary file) for ever. Per connection, GuardedHTTP adds:
- `header_timeout`: from a request's first byte (or the connection's opening) to the end of its headers;
- `body_timeout`: the longest pause inside a request body, and the grace period after which the body's average
  rate must reach `min_body_rate` KB/s (a trickle of a byte every few seconds is cut off too); time during which
  the server itself stopped reading (flow control while the application is busy) does not count;
- `max_connections`: a connection beyond it is answered 503 and closed before any of its bytes is read.
A connection cut off gets 408 (if no answer was started) and is closed; the log gets one line per kind of event at
most every 10 s (so a flood of slow connections cannot flood the log). These lines go through uvicorn's handlers in
every worker process, outside the CLI's flag mapping: they name the settings as the service's config and /v1/info do
(`header_timeout`), and so do the answers. The application sees the closed connection
as a client disconnect; the multipart parser then closes the upload's temporary files.
"""

from __future__ import annotations

import os
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ganprint.service.config import ENV_CONFIG, ServiceConfig
from ganprint.service.logs import ABORTED, install_access_log_redaction, quiet


def _raw_response(status: str, message: str) -> bytes:
    body = ('{"error": "%s"}' % message).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


# Answers to HTTP clients: they name the server's settings as the service's config does, never as flags.
_BUSY = _raw_response("503 Service Unavailable", "too many open connections; try again later (max_connections)")
_SLOW = _raw_response("408 Request Timeout", "request too slow (header_timeout, body_timeout, min_body_rate)")


class GuardedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """The HTTP protocol uvicorn would pick ("auto"), with small responses sent at once and the limits above."""

    limits: ServiceConfig | None = None  # read once per process from GANPRINT_SERVICE_CONFIG (defaults without it)

    # --- asyncio protocol callbacks -------------------------------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        cls = type(self)
        if cls.limits is None:
            cls.limits = ServiceConfig.from_env() if os.environ.get(ENV_CONFIG) else ServiceConfig()
            install_access_log_redaction()
        self._lim = cls.limits
        self._phase: str | None = None  # "headers", "body", or None (between requests, or the app is answering)
        self._timer = None
        self._body_bytes = 0
        self._active = 0.0  # seconds of the body phase during which the server was reading
        self._last_tick = self._last_data = 0.0
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        if len(self.connections) > self._lim.max_connections:
            quiet.warning("busy", "refused a connection: %d open, the limit is %d (`max_connections`)",
                           len(self.connections) - 1, self._lim.max_connections)
            transport.write(_BUSY)
            transport.close()
            return
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        if self._phase is None and not self._answering():
            self._enter("headers")  # the first byte of the next request on a kept-alive connection
        elif self._phase == "body":
            self._body_bytes += len(data)
            self._last_data = self.loop.time()
        before = self.cycle
        super().data_received(data)
        self._follow(before)

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if self.cycle is before:
            self._enter(None)  # between requests: uvicorn's keep-alive timeout applies
        else:
            self._follow(before)  # a pipelined request started

    def connection_lost(self, exc) -> None:
        self._cancel()
        self._phase = None
        super().connection_lost(exc)

    # --- the deadlines ----------------------------------------------------------------------------------------

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _follow(self, before) -> None:
        """After the parser ran: a new request's headers are complete, or its body has ended."""
        cycle = self.cycle
        if cycle is not before and cycle is not None:
            self._enter("body" if cycle.more_body and not cycle.response_complete else None)
        elif self._phase == "body" and (cycle is None or not cycle.more_body or cycle.response_complete):
            self._enter(None)

    def _enter(self, phase: str | None) -> None:
        self._cancel()
        self._phase = phase
        if phase == "headers":
            self._timer = self.loop.call_later(self._lim.header_timeout, self._headers_late)
        elif phase == "body":
            self._body_bytes, self._active = 0, 0.0
            self._last_tick = self._last_data = self.loop.time()
            self._timer = self.loop.call_later(self._tick_seconds(), self._tick)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick_seconds(self) -> float:
        return min(1.0, self._lim.body_timeout / 4)

    def _headers_late(self) -> None:
        self._timer = None
        if self._phase == "headers" and not self.transport.is_closing():
            self._abort("header", f"no complete request headers within {self._lim.header_timeout:g} s "
                                  f"(`header_timeout`)")

    def _tick(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self._phase != "body" or self.transport.is_closing():
            return
        if cycle is None or not cycle.more_body or cycle.response_complete:
            return self._enter(None)
        now = self.loop.time()
        if self.flow.read_paused:  # the server is not reading: the client cannot be late
            self._last_data = now
        else:
            self._active += now - self._last_tick
        self._last_tick = now
        lim = self._lim
        if now - self._last_data > lim.body_timeout:
            return self._abort("body", f"no request body data for {lim.body_timeout:g} s after "
                                       f"{self._body_bytes} bytes (`body_timeout`)")
        owed = lim.min_body_rate * 1024 * (self._active - lim.body_timeout)
        if owed > self._body_bytes:
            return self._abort("rate", f"request body at {self._body_bytes / 1024 / self._active:.1f} KB/s over "
                                       f"{self._active:.0f} s, below `min_body_rate` {lim.min_body_rate:g}")
        self._timer = self.loop.call_later(self._tick_seconds(), self._tick)

    def _abort(self, kind: str, why: str) -> None:
        cycle = self.cycle if self._phase == "body" else None
        where = f"{cycle.scope['method']} {cycle.scope['path']}" if cycle is not None else "a request"
        client = "%s:%d" % self.client if self.client else "a client"
        quiet.warning(kind, "closed the connection of %s (%s): %s", client, where, why)
        if cycle is not None:
            cycle.scope[ABORTED] = why  # the app's guard then logs nothing more for this request
        if cycle is None or not cycle.response_started:
            self.transport.write(_SLOW)
        self._phase = None
        self.transport.close()
