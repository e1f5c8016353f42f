"""A real HTTP server on loopback serving scripted files: what remote attachments (``path``)
are fetched from in tests. ``serve(path, body, status=200, headers=None, delay=0)`` sets
what a GET of ``path`` answers (``host``: only for requests with that Host, as a virtual
host); ``redirect(path, location)`` a 302. ``FileServer(tls=context)`` serves HTTPS."""
from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.broker import free_port


class FileServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.routes: dict[str, tuple[int, dict[str, str | None], bytes, float]] = {}
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                host = (self.headers.get("Host") or "").rpartition(":")[0] or self.headers.get("Host") or ""
                status, headers, body, delay = outer.routes.get(
                    f"{host.lower()}{self.path}", outer.routes.get(self.path, (404, {}, b"not found", 0.0)))
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in {"Content-Length": str(len(body)), **headers}.items():
                        if v is not None:  # a header set to None is left out (a body without Content-Length)
                            self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout, a size cap)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes, status: int = 200, headers: dict[str, str | None] | None = None,
              delay: float = 0.0, host: str = "") -> str:
        self.routes[f"{host.lower()}{path}"] = (status, headers or {}, body, delay)
        return self.url(path)

    def redirect(self, path: str, location: str) -> str:
        return self.serve(path, b"", 302, {"Location": location})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
