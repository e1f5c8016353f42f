"""The HTTP server's protection against slow and too many clients (uvicorn + httptools).

uvicorn times out only idle keep-alive connections: a client that opens a connection and
sends its headers a byte at a time, or never finishes its body, holds a socket (a file
descriptor) for ever, and ~1,000 of them starve every other request. This protocol adds:

- ``header_timeout``: the request line and headers must arrive within this many seconds
  of the request's first byte (or of the connection); otherwise 408 and close;
- ``body_timeout``: while a body is being read, at most this many seconds between two
  chunks; otherwise the connection is closed (the app sees a disconnect);
- ``max_connections`` per process: a connection over the cap is answered at once with
  503 + ``Retry-After`` and closed, so the file descriptors stay well under the open-files
  limit (the default cap is half of it) and the refusal is clear.

Keep-alive idle time is uvicorn's ``timeout_keep_alive``."""
from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.api.errors import error_body

log = logging.getLogger(__name__)


def default_max_connections() -> int:
    """Half the soft open-files limit (the rest is for the log, stores, SMTP and DNS)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(soft, 1 << 20) // 2)


def _response(status: bytes, error: str, extra: bytes = b"") -> bytes:
    body = json.dumps(error_body(int(status.split()[0]), error)).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n" + extra
            + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


BUSY = _response(b"503 Service Unavailable", "too many connections to this server; retry shortly", b"retry-after: 1\r\n")
SLOW = _response(b"408 Request Timeout", "the request headers took too long to arrive")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap and header/body timeouts (set by ``protocol``)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    _timer = None
    _reading_body = False

    def _arm(self, seconds: float, handler: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refusing a connection: %d open (cap %d)", len(self.connections), self.max_connections)
            transport.write(BUSY)
            transport.close()
            return
        self._arm(self.header_timeout, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # a keep-alive connection's next request
            self._arm(self.header_timeout, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading_body = True
        self._arm(self.body_timeout, self._body_too_slow)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout, self._body_too_slow)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_body = False
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.write(SLOW)
            self.transport.close()

    def _body_too_slow(self) -> None:
        self._timer = None
        if self._reading_body and not self.transport.is_closing():
            self.transport.close()  # the app's receive() reports http.disconnect


def protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` class with these limits, for ``uvicorn.Config(http=...)``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {
        "header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections})
