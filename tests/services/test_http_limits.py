"""Slow and too many clients cannot starve the API (issue 16, defect 3): a real `postline all`
under an open-files limit of 256, flooded with more slow-header clients than it may hold.
Over the connection cap a client gets a clear 503 at once; slow clients are cut off after
the header timeout (408); then normal requests are served again, and the process lives."""
from __future__ import annotations

import resource
import socket
import time

import httpx

from tests.support.postline import PostlineProcess

NOFILE = 256
SLOW_CLIENTS = 300  # more than the cap (128) and than the open-files limit allows


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def slow_client(port: int) -> socket.socket | None:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    except OSError:
        s.close()
        return None
    return s


def answer(s: socket.socket) -> bytes:
    try:
        return s.recv(4096)
    except OSError:
        return b""


def test_slow_clients_are_cut_off_and_the_excess_refused(tmp_path):
    proc = PostlineProcess(tmp_path / "data", preexec_fn=low_nofile,
                           env={"POSTLINE_HTTP_HEADER_TIMEOUT": "3", "POSTLINE_HTTP_BODY_TIMEOUT": "2"}).start()
    try:
        socks = [s for s in (slow_client(proc.port) for _ in range(SLOW_CLIENTS)) if s]
        # during the flood: a normal request is either served or refused clearly, never left hanging
        r = httpx.get(f"{proc.url}/healthz", timeout=10)
        assert r.status_code in (200, 503), r.text
        answers = [answer(s) for s in socks]
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
        assert refused and b"retry-after: 1" in refused[0], answers[:3]
        assert timed_out, answers[:3]
        assert len(refused) + len(timed_out) == len(socks), {a[:20] for a in answers}
        for s in socks:
            s.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if httpx.get(f"{proc.url}/healthz", timeout=10).status_code == 200:
                break
            time.sleep(0.2)
        assert [httpx.get(f"{proc.url}/healthz", timeout=10).status_code for _ in range(20)] == [200] * 20
        # a body that stops arriving: the connection is closed (the app sees a disconnect)
        s = socket.create_connection(("127.0.0.1", proc.port), timeout=15)
        s.sendall(b"POST /emails HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"from\": ")
        got = answer(s)
        assert not got or not got.startswith(b"HTTP/1.1 2"), got
        assert s.recv(1) == b""  # closed by the server, well before our 15 s
        s.close()
        assert proc.proc.poll() is None
    finally:
        proc.stop()
    assert "Too many open files" not in proc.output()
