"""Slow and abusive clients against a real server: half-sent headers, stalled and trickled uploads, idle
keep-alive connections, more connections than the limit, and requests holding too many pixels."""

from __future__ import annotations

import io
import os
import selectors
import socket
import time

import httpx
import pytest
from PIL import Image

from benchmarks.perf.service_kit import Server

HEADER_S, BODY_S, KEEP_S, MAX_CONN = 2.0, 2.0, 2.0, 520


@pytest.fixture(scope="module")
def limited(models, tmp_path_factory):
    """A server with short deadlines and its own temporary folder (where uploads spool)."""
    root = tmp_path_factory.mktemp("limits")
    tmp = root / "tmp"
    tmp.mkdir()
    srv = Server(["--registry", models["registry"], "--scalable-decoder", str(models["decoder"]),
                  "--header-timeout", str(HEADER_S), "--body-timeout", str(BODY_S), "--min-body-rate", "64",
                  "--keep-alive-timeout", str(KEEP_S), "--max-connections", str(MAX_CONN),
                  "--max-pixels", "1000000", "--max-request-pixels", "2500000"],
                 root / "server.log", env={"TMPDIR": str(tmp)})
    srv.tmp = tmp
    yield srv
    srv.stop()


def _connect(srv: Server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST, no TIME_WAIT
    return s


def _wait_closed(socks: list[socket.socket], limit: float) -> tuple[dict, float]:
    """Read every socket until the server closes it (or `limit` s pass); (socket -> bytes read, last close time)."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    deadline, last = time.monotonic() + limit, 0.0
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            try:
                chunk = key.fileobj.recv(65536)
            except ConnectionError:
                chunk = b""
            got[key.fileobj] += chunk
            if not chunk:
                sel.unregister(key.fileobj)
                last = time.monotonic()
    assert not sel.get_map(), f"{len(sel.get_map())} of {len(socks)} connections still open after {limit} s"
    return got, last


def _new_log(srv: Server, start: int) -> str:
    return srv.log.read_bytes()[start:].decode(errors="replace")


def _healthz(srv: Server) -> int:
    return httpx.get(srv.url + "/healthz", timeout=5).status_code


def test_half_sent_headers_are_cut_off_within_the_timeout_and_the_server_keeps_answering(limited):
    start = limited.log.stat().st_size
    socks = [_connect(limited) for _ in range(500)]
    for s in socks:
        s.sendall(b"POST /v1/attribute HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-da")
    sent = time.monotonic()
    assert _healthz(limited) == 200  # answered while the 500 wait
    got, last = _wait_closed(socks, HEADER_S + 8)
    try:
        assert last - sent <= HEADER_S + 2.5, f"closed {last - sent:.1f} s after the half headers"
        assert all(b.startswith(b"HTTP/1.1 408") for b in got.values())
        assert _healthz(limited) == 200
    finally:
        for s in socks:
            s.close()
    lines = [x for x in _new_log(limited, start).splitlines() if "(`header_timeout`)" in x]
    assert 1 <= len(lines) <= 2, lines  # one line per 10 s, counting the ones left out


def _spooled_files(pid: int, folder) -> list[str]:
    """The open files of process `pid` in `folder` (spooled uploads are unlinked at once: only /proc sees them)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


def _upload_head(length: int) -> bytes:
    return (b"POST /v1/attribute HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" % length)


def test_a_stalled_upload_is_aborted_leaves_no_temporary_file_and_logs_one_line(limited):
    start = limited.log.stat().st_size
    s = _connect(limited)
    s.sendall(_upload_head(3 << 20) + b"\x89PNG" + b"\0" * (3 << 19))  # 1.5 MB: spooled to a file (> 1 MB)
    stalled = time.monotonic()
    while not _spooled_files(limited.proc.pid, limited.tmp) and time.monotonic() - stalled < BODY_S:
        time.sleep(0.05)
    assert _spooled_files(limited.proc.pid, limited.tmp), "the upload was not spooled to the temporary folder"
    got, last = _wait_closed([s], BODY_S + 8)
    s.close()
    assert got[s].startswith(b"HTTP/1.1 408") and last - stalled <= BODY_S + 2
    time.sleep(0.3)
    assert _spooled_files(limited.proc.pid, limited.tmp) == []
    # A client that goes away itself in the middle of an upload: one line as well.
    s = _connect(limited)
    s.sendall(_upload_head(3 << 20) + b"\x89PNG" + b"\0" * 4096)
    time.sleep(0.3)
    s.close()
    time.sleep(0.5)
    assert _healthz(limited) == 200
    log = _new_log(limited, start)
    assert "Traceback" not in log and "Exception" not in log, log
    mentions = [x for x in log.splitlines() if "/v1/attribute" in x]
    assert len(mentions) == 2, log
    assert "(`body_timeout`)" in mentions[0] and "went away" in mentions[1]
    assert _spooled_files(limited.proc.pid, limited.tmp) == []


def test_an_upload_trickling_below_the_minimum_rate_is_cut_off(limited):
    start = limited.log.stat().st_size
    s = _connect(limited)
    s.sendall(_upload_head(1 << 20))
    begun = time.monotonic()
    closed = False
    while time.monotonic() - begun < BODY_S + 6:  # one byte every 0.2 s: never idle, far below 64 KB/s
        try:
            s.sendall(b"\0")
        except OSError:
            closed = True
            break
        time.sleep(0.2)
        s.setblocking(False)
        try:
            if s.recv(65536).startswith(b"HTTP/1.1 408"):
                closed = True
                break
        except BlockingIOError:
            pass
        finally:
            s.setblocking(True)
    s.close()
    assert closed and time.monotonic() - begun <= BODY_S + 3
    time.sleep(0.2)
    assert "below `min_body_rate`" in _new_log(limited, start)


def test_idle_keep_alive_connections_are_closed(limited):
    s = _connect(limited)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got, last = _wait_closed([s], KEEP_S + 6)
    s.close()
    assert got[s].startswith(b"HTTP/1.1 200") and b'"ok"' in got[s]


def test_connections_beyond_the_limit_get_503_at_once(limited):
    socks = [_connect(limited) for _ in range(MAX_CONN)]
    try:
        time.sleep(0.3)  # all accepted
        extra = _connect(limited)
        t0 = time.monotonic()
        got, last = _wait_closed([extra], 3)
        assert got[extra].startswith(b"HTTP/1.1 503") and b"(max_connections)" in got[extra]
        assert last - t0 < 1.0
        extra.close()
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    assert _healthz(limited) == 200


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_pixels_of_one_request_are_bounded_before_decoding(limited):
    one = _png(1000, 1000)  # 1 Mpx: this server's largest image; 2.5 Mpx per request
    with limited.client() as c:
        r = c.post("/v1/attribute", files=[("files", (f"{i}.png", one, "image/png")) for i in range(2)])
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        r = c.post("/v1/attribute", files=[("files", (f"{i}.png", one, "image/png")) for i in range(3)])
        assert r.status_code == 413 and "max_request_pixels in /v1/info" in r.json()["error"]
        assert time.monotonic() - t0 < 1.0
        r = c.post("/v1/attribute", files=[("files", ("big.png", _png(1001, 1000), "image/png"))])
        assert r.status_code == 400 and "max_pixels in /v1/info" in r.json()["error"]
        assert c.get("/v1/info").json()["max_request_pixels"] == 2_500_000
