"""ClickHouse's HTTP interface over this process's chDB, for the other processes of `postline all`.

chDB opens one data path in one process only, so the analytics process owns it and serves
it here; the API workers and the relay reach it with the ordinary ClickHouse-server adapter
(shared/store/clickhouse.py) at ``POSTLINE_CLICKHOUSE_URL``, which the supervisor sets to
``http://postline:<random password>@127.0.0.1:<port>``.

Contract: loopback only; every request needs that user and password (HTTP Basic, or
ClickHouse's ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers), compared in constant time,
else 401 — another local user must not read or write the analytics data. The query comes from
the URL's ``query`` and/or the body, or a multipart form's fields; ``param_<name>`` are
server-side parameters; the answer is
in the requested ``FORMAT`` (or ``default_format``), with the ``X-ClickHouse-*`` headers the
client reads; an engine error is an HTTP 500 whose text starts ``Code:`` as ClickHouse's does.
Calls share the chDB lock with this process's own analytics consumer."""
from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import re
import socket
import threading
from typing import Any, Callable
from email import policy
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)
MAX_BODY = 64 << 20  # queries from our own processes; a bigger body is a fault, not a query


def _credentials(headers: Message) -> tuple[str, str]:
    auth = headers.get("Authorization") or ""
    if auth.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return user, password
        except ValueError:
            return "", ""
    return headers.get("X-ClickHouse-User") or "", headers.get("X-ClickHouse-Key") or ""


def form_fields(content_type: str, body: str) -> dict[str, str]:
    """The fields of a multipart/form-data body, as ClickHouse's HTTP interface reads them:
    clickhouse-connect sends the query and its parameters as a form once the parameters
    pass 4 KB (a long filter value, a replay's id list)."""
    form = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n{body}".encode())
    return {str(part.get_param("name", header="content-disposition")): part.get_content() for part in form.iter_parts()}


class _Handler(BaseHTTPRequestHandler):
    server_version = "ClickHouse"
    protocol_version = "HTTP/1.1"  # keep-alive: the clients pool their connections
    server: _Server  # the server that made this handler (ChdbHttpServer)

    def log_message(self, *args: Any) -> None:  # requests are not worth a log line; errors are logged below
        pass

    def _handle(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._reply(413, b"Code: 1000. body too large", error=True, close=True)
        body = self.rfile.read(length).decode() if length else ""
        user, password = _credentials(self.headers)
        expected_user, expected_password = self.server.credentials
        if not (hmac.compare_digest(user.encode(), expected_user.encode())
                and hmac.compare_digest(password.encode(), expected_password.encode())):
            return self._reply(401, b"Code: 516. DB::Exception: Authentication failed", error=True)
        qs = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
            qs.update(form_fields(self.headers["Content-Type"], body))
            body = ""
        sql = "\n".join(part for part in (qs.get("query", ""), body) if part).strip()
        if url.path.startswith("/ping") or not sql:
            return self._reply(200, b"Ok.\n")
        params = {k[len("param_"):]: v for k, v in qs.items() if k.startswith("param_")}
        fmt = qs.get("default_format", "TabSeparated")
        if not sql.lstrip().upper().startswith("INSERT"):
            m = _FORMAT.search(sql)
            if m:
                fmt, sql = m.group(1), sql[: m.start()].rstrip()
        try:
            data = self.server.run(sql, fmt, params)
        except Exception as exc:  # the engine's error, in ClickHouse's shape
            return self._reply(500, f"Code: 62. DB::Exception: {exc}".encode(), error=True)
        self._reply(200, data, fmt)

    def _reply(self, status: int, data: bytes, fmt: str = "TabSeparated", error: bool = False,
               close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("X-ClickHouse-Format", fmt)
        self.send_header("X-ClickHouse-Server-Display-Name", "postline-analytics")
        self.send_header("X-ClickHouse-Summary", '{"read_rows":"0","written_rows":"0"}')
        if error:
            self.send_header("X-ClickHouse-Exception-Code", data.split(b".")[0].removeprefix(b"Code: ").decode())
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle


class _Server(ThreadingHTTPServer):
    credentials: tuple[str, str]  # the user and password every request must present
    run: Callable[[str, str, dict[str, str]], bytes]  # runs a query on the chDB session


class ChdbHttpServer:
    """Serves the chDB data at ``path`` on ``sock`` (a listening loopback socket the supervisor
    made once, so a restarted analytics process serves on the same port) until ``stop``."""

    def __init__(self, path: Path, sock: socket.socket, user: str, password: str):
        if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
            raise ValueError("the analytics owner serves chDB on loopback only")
        self.path = Path(path)
        self.httpd = _Server(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.httpd.daemon_threads = True
        self.httpd.credentials = (user, password)
        self.httpd.run = self._run
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="chdb-http", daemon=True)

    def _run(self, sql: str, fmt: str, params: dict[str, str]) -> bytes:
        from shared.store.chdb_store import _lock, _session

        with _lock:  # chDB is not thread-safe; the consumer in this process takes the same lock
            res = _session(self.path).query(sql, fmt, params=params)
        return res.bytes() if hasattr(res, "bytes") else bytes(res)

    def start(self) -> "ChdbHttpServer":
        self._thread.start()
        log.info("analytics store served to the other processes on %s:%s", *self.httpd.server_address[:2])
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
