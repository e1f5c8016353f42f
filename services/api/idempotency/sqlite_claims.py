"""Embedded claims: a table in the event log's own file (``idempotency_claims``), changed
inside the log's write transaction (``SqliteLog.append_guarded`` with no records). That
transaction serialises every writer of every process of ``postline all``, so the decision is
exact across API processes, and it shares its commit (and fsync) with whatever else is
appended at that moment. Waiters look again every ``POLL`` seconds (a read of one row)."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable

from services.api.idempotency.claims import TTL_SECONDS, Claim, Claims, apply
from shared import events as ev
from shared.log.port import EventLog

SCHEMA = ("CREATE TABLE IF NOT EXISTS idempotency_claims(scope TEXT NOT NULL, key TEXT NOT NULL, "
          "owner TEXT NOT NULL, body_hash TEXT NOT NULL, lease_until REAL NOT NULL, at REAL NOT NULL, "
          "response TEXT, since REAL, PRIMARY KEY (scope, key)) WITHOUT ROWID",
          "CREATE INDEX IF NOT EXISTS idempotency_claims_at ON idempotency_claims(at)")
_ADD_SINCE = "ALTER TABLE idempotency_claims ADD COLUMN since REAL"  # a table made before ``since`` was kept
_GET = "SELECT owner, body_hash, lease_until, at, response, since FROM idempotency_claims WHERE scope=? AND key=?"
_PUT = ("INSERT OR REPLACE INTO idempotency_claims(scope, key, owner, body_hash, lease_until, at, response, since) "
        "VALUES (?,?,?,?,?,?,?,?)")
_DELETE = "DELETE FROM idempotency_claims WHERE scope=? AND key=?"
_EXPIRE = "DELETE FROM idempotency_claims WHERE at < ?"
POLL = 0.02
PRUNE_EVERY = 600.0  # seconds between two deletions of claims older than 24 h, per process


def _get(conn: sqlite3.Connection, scope: str, key: str) -> Claim | None:
    row = conn.execute(_GET, (scope, key)).fetchone()
    if row is None:
        return None
    owner, body_hash, lease_until, at, response, since = row
    return Claim(owner, body_hash, lease_until, at, json.loads(response) if response is not None else None, since)


def _put(conn: sqlite3.Connection, scope: str, key: str, c: Claim) -> None:
    response = json.dumps(c.response, separators=(",", ":")) if c.response is not None else None
    conn.execute(_PUT, (scope, key, c.owner, c.body_hash, c.lease_until, c.at, response, c.since))


def _create(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    if "since" not in {row[1] for row in conn.execute("PRAGMA table_info(idempotency_claims)")}:
        conn.execute(_ADD_SINCE)


@dataclass
class _Verdict:
    state: Claim | None
    chosen: list = field(default_factory=list)  # no records: the claim is the table's row


class SqliteClaims(Claims):
    def __init__(self, log: EventLog) -> None:
        self.log = log  # the embedded log (or its deadline wrapper): it runs the guard
        self._schema_ready = False
        self._pruned = 0.0

    async def look(self, scope: str, key: str) -> Claim | None:
        try:
            state = self.log.read(lambda conn: _get(conn, scope, key))
        except sqlite3.OperationalError:  # no keyed send yet on this installation: no table (or column) yet
            return None
        return state if state is not None and state.live(time.time()) else None

    async def change(self, scope: str, key: str, change: dict) -> Claim | None:
        verdict, _ = await self.log.append_guarded(ev.Topic.IDEMPOTENCY, [], self._guard(scope, key, change))
        self._schema_ready = True
        return verdict.state

    def _guard(self, scope: str, key: str, change: dict) -> Callable[[sqlite3.Connection], _Verdict]:
        def guard(conn: sqlite3.Connection) -> _Verdict:
            if not self._schema_ready:
                _create(conn)
            before = _get(conn, scope, key)
            after = apply(before, change)
            if after is None and before is not None:
                conn.execute(_DELETE, (scope, key))
            elif after is not None and after != before:
                _put(conn, scope, key, after)
            if change["at"] - self._pruned > PRUNE_EVERY:  # keeps the table to a day of keys
                conn.execute(_EXPIRE, (change["at"] - TTL_SECONDS,))
                self._pruned = change["at"]
            return _Verdict(after)
        return guard

    async def changed(self, scope: str, key: str, timeout: float) -> None:
        await asyncio.sleep(max(0.0, min(POLL, timeout)))
