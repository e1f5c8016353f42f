"""chDB adapter: the ClickHouse engine in-process, data in the data dir.

chDB allows one session per process and is not thread-safe, so every call is
serialised by a lock and run off the event loop."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.store.port import AnalyticsStore, Row, StoreRefused, StoreUnavailable
from shared.store.sql import bind

if TYPE_CHECKING:
    from chdb.session import Session

_sessions: dict[str, Session] = {}
_lock = threading.Lock()

# ClickHouse's server caches, bounded: its defaults are sized for a dedicated server (5 GB
# each for marks, primary indexes and skip-index marks), and in the embedded engine they
# grew with the data into the one process that also serves the API's reads. Postline's
# queries read a few columns of time-ordered parts; these bounds cost nothing measurable in
# `make bench --only stats` and keep the analytics process's memory flat
# (`make bench --only memory`; docs/benchmarks.md). Passed as start-up arguments of the
# engine in the session's connection string.
CACHE_LIMITS = {
    "mark_cache_size": 64 << 20,
    "index_mark_cache_size": 16 << 20,
    "primary_index_cache_size": 64 << 20,
    "query_condition_cache_size": 16 << 20,
    "compiled_expression_cache_size": 16 << 20,
}


def _session(path: Path) -> Session:
    from chdb import session

    key = str(path)
    if key not in _sessions:
        if _sessions:  # chDB keeps one live session per process
            for old in _sessions.values():
                old.close()
            _sessions.clear()
        path.mkdir(parents=True, exist_ok=True)
        limits = "&".join(f"{name}={value}" for name, value in CACHE_LIMITS.items())
        _sessions[key] = session.Session(f"file:{key}?{limits}")
    return _sessions[key]


class ChdbStore(AnalyticsStore):
    def __init__(self, path: Path):
        self.path = Path(path)

    def _run(self, sql: str, fmt: str = "CSV", params: dict[str, Any] | None = None) -> bytes:
        try:
            with _lock:
                return bytes(_session(self.path).query(sql, fmt, params=bind(params)).bytes())
        except OSError as exc:  # the data path cannot be created or opened
            raise StoreUnavailable(f"chDB data path {self.path}: {exc}") from exc
        except RuntimeError as exc:  # chdb's ChdbError: the engine refused the statement
            raise StoreRefused(str(exc)) from exc

    async def execute(self, sql: str) -> None:
        await asyncio.to_thread(self._run, sql)

    async def insert(self, table: str, rows: list[Row], dedup_token: str) -> None:
        if not rows:
            return
        body = "\n".join(json.dumps(r, default=str) for r in rows)
        sql = (f"INSERT INTO postline.{table} SETTINGS insert_deduplication_token='{_quote(dedup_token)}' "
               f"FORMAT JSONEachRow\n{body}")
        await asyncio.to_thread(self._run, sql)

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        raw = await asyncio.to_thread(self._run, sql, "JSONEachRow", params)
        return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")
