"""Analytics-store port: a ClickHouse-SQL store with idempotent batch inserts.

Adapters raise the port's errors, never their driver's (checked for chDB and the
ClickHouse server adapter by ``tests/shared/store/test_contract.py``)."""
from __future__ import annotations

import abc

from shared.store.migrations import MIGRATIONS


class StoreError(Exception):
    """The store refused a statement (bad SQL, unknown table or column: a bug or a missing
    migration). Retrying the same statement gives the same answer."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store cannot be reached (server down, data path unusable): an infrastructure
    fault, worth retrying."""


class AnalyticsStore(abc.ABC):
    @abc.abstractmethod
    async def execute(self, sql: str) -> None:
        """Run a statement (DDL). Raises ``StoreError`` (``StoreUnavailable`` when unreachable)."""

    @abc.abstractmethod
    async def insert(self, table: str, rows: list[dict], dedup_token: str) -> None:
        """Insert ``rows`` into ``postline.<table>`` as one batch; durable when it returns.

        Re-inserting the same batch (same ``dedup_token``) must not duplicate rows in query
        results: tables are ReplacingMergeTree on the event id and queries deduplicate.
        Raises ``StoreError`` (``StoreUnavailable`` when unreachable); nothing is inserted then."""

    @abc.abstractmethod
    async def query(self, sql: str, params: dict | None = None) -> list[dict]:
        """Run a SELECT with ``{name:Type}`` parameters; rows as dicts. Raises ``StoreError``
        (``StoreUnavailable`` when the store cannot be reached)."""

    async def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version."""
        await self.execute("CREATE DATABASE IF NOT EXISTS postline")
        await self.execute(
            "CREATE TABLE IF NOT EXISTS postline.schema_migrations (version UInt32, applied_at DateTime DEFAULT now()) "
            "ENGINE = MergeTree ORDER BY version")
        done = {r["version"] for r in await self.query("SELECT version FROM postline.schema_migrations")}
        for version, sql, *only_if in MIGRATIONS:
            if version not in done:
                if not only_if or await self.query(only_if[0]):
                    await self.execute(sql)
                await self.insert("schema_migrations", [{"version": version}], f"migration-{version}")
        return max(step[0] for step in MIGRATIONS)

    async def close(self) -> None:
        """Release resources."""
