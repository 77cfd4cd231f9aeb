"""`ganprint serve`'s HTTP protocol turns Nagle's algorithm off on every connection, whatever made the listener."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from ganprint.service.runner import HTTP_PROTOCOL


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _nodelay_of_a_served_connection(http: str) -> int:
    """Serve on a listener bound with proto 0 (as uvicorn < 0.55 binds `--workers N`'s); the accepted socket's
    TCP_NODELAY while a keep-alive connection is open."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_app, http=http, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection(*listener.getsockname())
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    (conn,) = server.server_state.connections
    value = conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    writer.close()
    server.should_exit = True
    await task
    return value


def test_connections_get_tcp_nodelay_even_from_a_listener_asyncio_does_not_see_as_tcp():
    assert asyncio.run(_nodelay_of_a_served_connection("auto")) == 0  # the trap: asyncio leaves Nagle on
    assert asyncio.run(_nodelay_of_a_served_connection(HTTP_PROTOCOL)) != 0
