"""chDB adapter: the ClickHouse engine in-process, data in the data dir.

chDB allows one session per process and is not thread-safe, so every call is
serialised by a lock and run off the event loop."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from shared.store.port import AnalyticsStore, StoreError, StoreUnavailable
from shared.store.sql import bind

_sessions: dict[str, object] = {}
_lock = threading.Lock()


def _session(path: Path):
    from chdb import session

    key = str(path)
    if key not in _sessions:
        if _sessions:  # chDB keeps one live session per process
            for old in _sessions.values():
                old.close()
            _sessions.clear()
        path.mkdir(parents=True, exist_ok=True)
        _sessions[key] = session.Session(key)
    return _sessions[key]


class ChdbStore(AnalyticsStore):
    def __init__(self, path: Path):
        self.path = Path(path)

    def _run(self, sql: str, fmt: str = "CSV", params: dict | None = None):
        try:
            with _lock:
                return _session(self.path).query(sql, fmt, params=bind(params))
        except OSError as exc:  # the data path cannot be created or opened
            raise StoreUnavailable(f"chDB data path {self.path}: {exc}") from exc
        except RuntimeError as exc:  # chdb's ChdbError: the engine refused the statement
            raise StoreError(str(exc)) from exc

    async def execute(self, sql):
        await asyncio.to_thread(self._run, sql)

    async def insert(self, table, rows, dedup_token):
        if not rows:
            return
        body = "\n".join(json.dumps(r, default=str) for r in rows)
        sql = (f"INSERT INTO postline.{table} SETTINGS insert_deduplication_token='{_quote(dedup_token)}' "
               f"FORMAT JSONEachRow\n{body}")
        await asyncio.to_thread(self._run, sql)

    async def query(self, sql, params=None):
        res = await asyncio.to_thread(self._run, sql, "JSONEachRow", params)
        raw = res.bytes() if hasattr(res, "bytes") else bytes(res)
        return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")
