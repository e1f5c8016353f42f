"""ClickHouse server adapter (clickhouse-connect over HTTP).

Rows go in as ``JSONEachRow`` with an ``insert_deduplication_token``; queries use
server-side ``{name:Type}`` parameters and come back as ``JSONEachRow``, so this adapter
and the chDB one speak exactly the same SQL."""
from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import unquote, urlparse

from shared.store.port import AnalyticsStore, Row, StoreRefused, StoreUnavailable

if TYPE_CHECKING:
    import httpx
    from clickhouse_connect.driver.client import Client

T = TypeVar("T")
PING_TIMEOUT = 3.0  # a probe's ping: connect and answer, each (the callers' deadlines are about as long)


class ClickHouseStore(AnalyticsStore):
    def __init__(self, url: str):
        self.url = url
        self._client: Client | None = None
        self._pings: httpx.AsyncClient | None = None

    def _endpoint(self) -> tuple[str, str, int, str, str]:
        """``(scheme, host, port, user, password)`` of the URL (ClickHouse's default ports; the
        credentials percent-decoded, as a URL's user info is written)."""
        u = urlparse(self.url)
        return (u.scheme, u.hostname or "", u.port or (8443 if u.scheme == "https" else 8123),
                unquote(u.username or "default"), unquote(u.password or ""))

    def _connect(self) -> Client:
        if self._client is None:
            import clickhouse_connect

            scheme, host, port, user, password = self._endpoint()
            self._client = clickhouse_connect.get_client(
                host=host, port=port, username=user, password=password, secure=scheme == "https",
                connect_timeout=5, send_receive_timeout=30, autogenerate_session_id=False)
        return self._client

    async def _call(self, fn: Callable[[], T]) -> T:
        """``fn`` off the event loop, with the driver's errors as the port's."""
        from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

        try:
            return await asyncio.to_thread(fn)
        except OperationalError as exc:  # connection refused, reset, timed out
            raise StoreUnavailable(f"ClickHouse at {self._where()}: {exc}") from exc
        except ClickHouseError as exc:
            raise StoreRefused(str(exc)) from exc

    async def ping(self) -> None:
        """``SELECT 1`` over HTTP on the event loop (httpx), not through the driver's thread:
        a caller's deadline cancels it outright, so an unreachable server holds no thread and
        does not delay the process's exit (asyncio waits for its executor's threads)."""
        import httpx

        scheme, host, port, user, password = self._endpoint()
        if self._pings is None:
            # verify: certificates checked for https; for http no TLS context is built (~65 ms of CPU)
            self._pings = httpx.AsyncClient(timeout=PING_TIMEOUT, verify=scheme == "https",
                                            headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password})
        try:
            r = await self._pings.get(httpx.URL(scheme=scheme, host=host, port=port, path="/"),
                                      params={"query": "SELECT 1"})
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"ClickHouse at {self._where()}: {exc!r}") from exc
        if r.status_code != 200:
            raise StoreRefused(r.text[:300])

    def _where(self) -> str:
        u = urlparse(self.url)  # never the password
        return f"{u.hostname}:{u.port}"

    async def execute(self, sql: str) -> None:
        await self._call(lambda: self._connect().command(sql))

    async def insert(self, table: str, rows: list[Row], dedup_token: str) -> None:
        if not rows:
            return
        body = "\n".join(json.dumps(r, default=str) for r in rows)
        sql = f"INSERT INTO postline.{table} FORMAT JSONEachRow\n{body}"
        await self._call(lambda: self._connect().command(
            sql, settings={"insert_deduplication_token": dedup_token}))

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        raw = await self._call(lambda: self._connect().raw_query(sql, parameters=params or {},
                                                                 fmt="JSONEachRow"))
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    async def close(self) -> None:
        if self._pings is not None:
            await self._pings.aclose()
            self._pings = None
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None
