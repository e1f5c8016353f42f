"""Analytics-store port: a ClickHouse-SQL store with idempotent batch inserts.

Adapters raise the port's errors, never their driver's (checked for chDB and the
ClickHouse server adapter by ``tests/shared/store/test_contract.py``)."""
from __future__ import annotations

import abc
import logging
from typing import Any

from shared.store.migrations import BACKFILLS, MIGRATIONS

log = logging.getLogger(__name__)
Row = dict[str, Any]  # a row as a dict, column name → JSON value


class StoreError(Exception):
    """Base of the errors the analytics-store port raises. ``retriable``: whether the same
    statement may succeed later (the store was down or slow) or fails the same way;
    ``shared/backoff_log.py`` treats the retriable ones as "the analytics store is down"."""

    retriable: bool = False
    dependency = "analytics_store"  # the name in postline_dependency_* metrics and in the log lines


class StoreRefused(StoreError):
    """The store refused a statement (bad SQL, unknown table or column: a bug or a missing
    migration). Retrying the same statement gives the same answer."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store cannot be reached (server down, data path unusable): an infrastructure
    fault, worth retrying."""

    retriable = True


class AnalyticsStore(abc.ABC):
    @abc.abstractmethod
    async def execute(self, sql: str) -> None:
        """Run a statement (DDL). Raises ``StoreRefused``, or ``StoreUnavailable`` when unreachable."""

    @abc.abstractmethod
    async def insert(self, table: str, rows: list[Row], dedup_token: str) -> None:
        """Insert ``rows`` into ``postline.<table>`` as one batch; durable when it returns.

        Re-inserting the same batch (same ``dedup_token``) must not duplicate rows in query
        results: tables are ReplacingMergeTree on the event id and queries deduplicate.
        Raises ``StoreRefused`` or ``StoreUnavailable`` (unreachable); nothing is inserted then."""

    @abc.abstractmethod
    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run a SELECT with ``{name:Type}`` parameters; rows as dicts. Raises ``StoreRefused``,
        or ``StoreUnavailable`` when the store cannot be reached."""

    async def ping(self) -> None:
        """``SELECT 1``: returns when the store answers; raises ``StoreUnavailable`` (or
        ``StoreRefused``) when it cannot. Readiness probes call it under a deadline, so an
        adapter whose queries run in threads answers it on the event loop instead (cancelled
        with its caller, never a thread left waiting on a server that does not answer)."""
        await self.query("SELECT 1 AS ok")

    async def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version.

        Several migrators may run at once (the analytics replicas and the ``postline migrate``
        Job of an upgrade), each running the steps it has not seen recorded. Most steps can
        run twice; a backfill (``BACKFILLS``) would count its rows twice, so it runs under a
        claim: the table ``postline._migration_claim_<version>``, which one ``CREATE TABLE``
        makes (ClickHouse refuses the others). The migrator that made it runs the step, writes
        a row into the claim (the step is done) and records the step; another one records a
        done step it finds unrecorded (its migrator died in between), and leaves a step
        claimed and not done to its migrator: still so at a later start, that migrator died
        during it (docs/operations.md, "A backfill claimed and not done")."""
        await self.execute("CREATE DATABASE IF NOT EXISTS postline")
        await self.execute(
            "CREATE TABLE IF NOT EXISTS postline.schema_migrations (version UInt32, applied_at DateTime DEFAULT now()) "
            "ENGINE = MergeTree ORDER BY version")
        done = {r["version"] for r in await self.query("SELECT version FROM postline.schema_migrations")}
        for step in MIGRATIONS:
            version, sql, only_if = step[0], step[1], step[2] if len(step) == 3 else None
            if version in done:
                continue
            turn = await self._claim(version) if version in BACKFILLS else "run"
            if turn == "theirs":
                continue
            if turn == "run" and (only_if is None or await self.query(only_if)):
                await self.execute(sql)
                if version in BACKFILLS:
                    await self.insert(f"_migration_claim_{version}", [{"done": 1}], f"migration-{version}-done")
            await self.insert("schema_migrations", [{"version": version}], f"migration-{version}")
        return max(step[0] for step in MIGRATIONS)

    async def _claim(self, version: int) -> str:
        """``run``: this migrator made the claim of step ``version``; ``record``: another one
        made it and finished the step; ``theirs``: another one holds it (see ``migrate``)."""
        table = f"postline._migration_claim_{version}"
        try:
            await self.execute(f"CREATE TABLE {table} (done UInt8, at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY tuple()")
            return "run"
        except StoreRefused:
            if not (await self.query(f"EXISTS TABLE {table}"))[0].get("result"):
                raise
        if await self.query(f"SELECT 1 FROM {table} LIMIT 1"):
            return "record"
        log.warning("analytics schema: step %d was claimed by another migrator (%s) and is not done; if none is "
                    "running, it died during the step: see docs/operations.md, \"A backfill claimed and not done\"",
                    version, table)
        return "theirs"

    async def close(self) -> None:
        """Release resources."""
