"""A real HTTP webhook receiver on loopback that records requests and answers as scripted."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.broker import free_port


class Receiver:
    def __init__(self, statuses: list[int] | None = None, headers: dict | None = None,
                 gate: threading.Event | None = None, tls_context=None):
        """``tls_context``: serve HTTPS (HTTP/1.1, connections kept alive) with that context."""
        self.port = free_port()
        self.statuses = list(statuses or [])
        self.extra_headers = headers or {}
        self.gate = gate  # when set, requests wait for it before answering (a stuck endpoint)
        self.received: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if tls_context is not None else "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: no delivery, as for any server
                    self.close_connection = True
                    return
                if outer.gate is not None:
                    outer.gate.wait(60)
                with outer.lock:
                    status = outer.statuses.pop(0) if len(outer.statuses) > 1 else (outer.statuses or [200])[0]
                    outer.received.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                           "body": body, "status": status, "at": time.time(), "path": self.path})
                self.send_response(status)
                for k, v in outer.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.scheme = "http"
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/hook"

    def wait(self, n: int, timeout: float = 30, predicate=lambda r: True) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [r for r in self.received if predicate(r)]
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"receiver got {len(got)} of {n} requests")

    def stop(self) -> None:
        self.server.shutdown()
