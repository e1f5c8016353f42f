"""ClickHouse's HTTP interface served over a chDB session, so the clickhouse-connect
adapter runs against the real engine. Enough of the protocol for clickhouse-connect:
the query from the URL and/or body, ``param_*`` server-side parameters, settings ignored,
output in the requested FORMAT, ``X-ClickHouse-*`` headers, errors as HTTP 500 text."""
from __future__ import annotations

import contextlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from services.analytics.clickhouse_http import form_fields
from shared.store.chdb_store import ChdbStore
from shared.store.clickhouse import ClickHouseStore
from tests.support.broker import free_port

_lock = threading.Lock()
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)


class _Handler(BaseHTTPRequestHandler):
    server_version = "ClickHouse"

    def log_message(self, *args):
        pass

    def _run(self):
        url = urlparse(self.path)
        qs = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode() if self.command == "POST" else ""
        if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
            qs.update(form_fields(self.headers["Content-Type"], body))  # large parameters come as a form
            body = ""
        sql = (qs.get("query", "") + ("\n" if qs.get("query") and body else "") + body).strip()
        if url.path.startswith("/ping") or not sql:
            return self._reply(200, b"Ok.\n", "TabSeparated")
        params = {k[len("param_"):]: v for k, v in qs.items() if k.startswith("param_")}
        fmt = "TabSeparated"
        m = _FORMAT.search(sql) if not sql.lstrip().upper().startswith("INSERT") else None
        if m:
            fmt = m.group(1)
            sql = sql[: m.start()].rstrip()
        elif qs.get("default_format"):
            fmt = qs["default_format"]
        try:
            with _lock:
                res = self.server.session.query(sql, fmt, params=params)
            data = res.bytes() if hasattr(res, "bytes") else bytes(res)
        except Exception as exc:  # the engine's error, as ClickHouse reports it
            return self._reply(500, f"Code: 62. DB::Exception: {exc}".encode(), "TabSeparated", error=True)
        self._reply(200, data, fmt)

    def _reply(self, status: int, data: bytes, fmt: str, error: bool = False):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("X-ClickHouse-Format", fmt)
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-fixture")
        self.send_header("X-ClickHouse-Summary", '{"read_rows":"0","written_rows":"0"}')
        if error:
            self.send_header("X-ClickHouse-Exception-Code", "62")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _run


class ClickHouseHttp:
    def __init__(self, path: Path):
        from shared.store.chdb_store import _session  # chDB allows one live session per process

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self.server.session = _session(Path(path))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ClickHouseHttp":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.asynccontextmanager
async def store_of_kind(kind: str, path: Path):
    """An analytics store over chDB data at ``path``: embedded ("chdb"), or the clickhouse-connect
    adapter in front of this stand-in ("clickhouse-server"); closed (and the server stopped) after."""
    server = ClickHouseHttp(path).start() if kind == "clickhouse-server" else None
    store = ClickHouseStore(server.url) if server else ChdbStore(path)
    try:
        yield store
    finally:
        await store.close()
        if server:
            server.stop()
