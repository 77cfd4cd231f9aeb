"""uvicorn's HTTP protocol with TCP_NODELAY set on every accepted TCP connection.

asyncio turns Nagle's algorithm off only on sockets whose Python object says IPPROTO_TCP. uvicorn < 0.55 binds
the listening socket of `--workers N` with proto 0, so its connections kept Nagle on, and every keep-alive
request waited for the client's delayed ACK (measured in benchmarks/perf/RESULTS-service.md). `ganprint serve`
names this class to uvicorn (as an import string, so only the workers import it), whatever uvicorn's version and
however the socket was made.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """The HTTP protocol uvicorn would pick ("auto"), with small responses sent at once."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
