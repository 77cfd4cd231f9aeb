"""A TCP proxy in front of the test PostgreSQL that loses a connection at a chosen point of an issue's COMMIT.

This is the fault "the database connection dies during COMMIT", made deterministic: the proxy watches the
PostgreSQL wire protocol of each connection and, once a transaction that inserted into `fingerprints` sends COMMIT,
either drops the connection before the server sees COMMIT ("before"), or lets the server commit and drops the
connection before its answer reaches the client ("after"). It fires once; with `refuse_after` it then refuses new
connections until `refuse` is cleared (the database unreachable afterwards).
"""

from __future__ import annotations

import contextlib
import socket
import threading

_COMMAND_COMPLETE_COMMIT = b"COMMIT\x00"  # the tag of PostgreSQL's CommandComplete message for COMMIT


class FaultProxy:
    """127.0.0.1:`port` forwards to PostgreSQL at (host, port); `arm(mode)` makes the next issue's COMMIT fail."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode: str | None = None
        self.refuse_after = False
        self.refuse = False
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database: str) -> str:
        """The URL of `database` through this proxy."""
        return f"postgresql://ganprint@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def arm(self, mode: str, refuse_after: bool = False) -> None:
        """Drop the connection of the next issue at its COMMIT: mode "before" or "after" the server commits."""
        assert mode in ("before", "after")
        self.mode, self.refuse_after = mode, refuse_after
        self.fired.clear()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); a bare close() would not, and that thread could then
        # accept on a later listener that reuses the descriptor number.
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                return
            if self.refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            state = {"issue": False, "commit_sent": False}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._drop(data, state, upstream):
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _drop(self, data: bytes, state: dict, upstream: bool) -> bool:
        """Whether this chunk is where the connection dies (and the fault fires)."""
        with self._lock:
            if self.mode is None:
                return False
            if upstream:
                state["issue"] = state["issue"] or b"INSERT INTO fingerprints" in data
                if state["issue"] and b"COMMIT" in data:
                    if self.mode == "before":
                        return self._fire()
                    state["commit_sent"] = True
                return False
            if state["commit_sent"] and _COMMAND_COMPLETE_COMMIT in data:
                return self._fire()
            return False

    def _fire(self) -> bool:
        self.mode = None
        self.refuse = self.refuse_after
        self.fired.set()
        return True
