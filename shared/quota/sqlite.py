"""Exact counters in the embedded log's own file, decided in its write transaction.

Every writer of every process of an installation commits through one lock and one
``BEGIN IMMEDIATE`` (shared/log/sqlite.py), so a check-and-count run inside that
transaction is exact across all API processes, and costs no fsync of its own: it commits
with the send it admits. Table ``quota_slots``: units per (service, scope, slot)."""
from __future__ import annotations

import sqlite3
import time
from typing import Callable, Sequence

from shared.log.port import EventLog
from shared.quota.port import Quota, judge_as_one
from shared.quota.window import Counted, Decision, Take, Window, decide

SCHEMA = ("CREATE TABLE IF NOT EXISTS quota_slots(svc TEXT NOT NULL, scope TEXT NOT NULL, slot INTEGER NOT NULL, "
          "n INTEGER NOT NULL, PRIMARY KEY (svc, scope, slot)) WITHOUT ROWID")
_COUNT = "SELECT COALESCE(SUM(n), 0), MIN(slot) FROM quota_slots WHERE svc=? AND scope=? AND slot>=?"
_TALLY = "SELECT COALESCE(SUM(n), 0), MAX(slot) FROM quota_slots WHERE svc=? AND scope=? AND slot>=?"
_ROWS = "SELECT slot, n FROM quota_slots WHERE svc=? AND scope=? AND slot>=? ORDER BY slot"
_ADD = ("INSERT INTO quota_slots(svc, scope, slot, n) VALUES (?,?,?,?) "
        "ON CONFLICT(svc, scope, slot) DO UPDATE SET n = n + excluded.n")
_EXPIRE = "DELETE FROM quota_slots WHERE svc=? AND scope=? AND slot<?"
_SWEEP = "DELETE FROM quota_slots WHERE scope=? AND slot<?"  # every key's expired slots (a table scan)
SWEEP_INTERVAL = 600.0  # seconds between two sweeps of a scope by one process


def count(conn: sqlite3.Connection, take: Take, now: float) -> list[Counted]:
    out = []
    for w in take.windows:
        units, oldest = conn.execute(_COUNT, (take.service_id, w.scope, w.first_live(now))).fetchone()
        out.append(Counted(w, units, oldest))
    return out


def judge(conn: sqlite3.Connection, take: Take, now: float) -> Decision:
    def rows(w: Window) -> list[tuple[int, int]]:
        return conn.execute(_ROWS, (take.service_id, w.scope, w.first_live(now))).fetchall()

    return decide(take, now, count(conn, take, now), rows)


def record(conn: sqlite3.Connection, take: Take, now: float) -> None:
    for w in take.windows:
        conn.execute(_ADD, (take.service_id, w.scope, w.slot_at(now), take.n))
        conn.execute(_EXPIRE, (take.service_id, w.scope, w.first_live(now)))  # usually nothing: one index probe


class Verdict:
    """The guard's answer to the log: which records to append, and the decisions."""

    def __init__(self, decisions: list[Decision]):
        self.decisions = decisions
        self.chosen = [d.allowed for d in decisions]


class SqliteQuota(Quota):
    def __init__(self, log: EventLog):
        self.log = log  # the embedded log (or its deadline wrapper): it runs the guard
        self._schema_ready = False
        self._swept: dict[str, float] = {}  # scope → when this process last swept it

    def _sweep(self, conn: sqlite3.Connection, windows: list[Window], now: float) -> None:
        """Drop expired slots of keys nobody counts any more (``record`` expires only the key it
        counts): an address that failed once (services/api/throttle.py) or a deleted service
        would otherwise keep its rows for ever. A scope's windows all have one length."""
        for w in windows:
            if now - self._swept.get(w.scope, 0.0) >= SWEEP_INTERVAL:
                conn.execute(_SWEEP, (w.scope, w.first_live(now)))
                self._swept[w.scope] = now

    def _guard(self, takes: list[Take], all_or_nothing: bool) -> Callable[[sqlite3.Connection], Verdict]:
        def guard(conn: sqlite3.Connection) -> Verdict:
            if not self._schema_ready:
                conn.execute(SCHEMA)
            now = time.time()
            if all_or_nothing:
                decisions = self._as_one(conn, takes, now)
            else:
                decisions = []
                for take in takes:
                    decision = judge(conn, take, now)
                    if decision.allowed and take.n:
                        record(conn, take, now)
                    decisions.append(decision)
            self._sweep(conn, [w for take in takes for w in take.windows], now)
            return Verdict(decisions)
        return guard

    @staticmethod
    def _as_one(conn: sqlite3.Connection, takes: list[Take], now: float) -> list[Decision]:
        """``judge_as_one`` in the write transaction: what it counted is undone (a savepoint)
        when any take does not fit, so no other writer ever sees part of the set counted."""
        conn.execute("SAVEPOINT quota_as_one")
        decisions = judge_as_one(takes, lambda take: judge(conn, take, now), lambda take: record(conn, take, now))
        if not all(d.allowed for d in decisions):
            conn.execute("ROLLBACK TO quota_as_one")
        conn.execute("RELEASE quota_as_one")
        return decisions

    async def admit(self, topic: str, takes: list[Take], items: Sequence[tuple[str | None, bytes]],
                    all_or_nothing: bool = False) -> list[Decision]:
        verdict, _ = await self.log.append_guarded(topic, items, self._guard(takes, all_or_nothing))
        self._schema_ready = True
        return verdict.decisions

    def peek(self, take: Take) -> Decision:
        try:
            return self.log.read(lambda conn: judge(conn, take, time.time()))
        except sqlite3.OperationalError:  # no send yet on this installation: no table yet
            return decide(take, time.time(), [Counted(w, 0, None) for w in take.windows], lambda w: [])

    def tally(self, service_id: str, scope: tuple[str, int, int]) -> tuple[int, int | None]:
        name, length, slot = scope
        first = Window(name, length, slot, 0).first_live(time.time())
        try:
            units, newest = self.log.read(lambda conn: conn.execute(_TALLY, (service_id, name, first)).fetchone())
        except sqlite3.OperationalError:  # nothing counted yet on this installation: no table yet
            return 0, None
        return int(units), newest

    def usage(self, service_id: str, scopes: list[tuple[str, int, int]]) -> dict[str, int]:
        now = time.time()
        take = Take(service_id, 0, tuple(Window(scope, length, slot, 0) for scope, length, slot in scopes))
        try:
            counted = self.log.read(lambda conn: count(conn, take, now))
        except sqlite3.OperationalError:
            return {scope: 0 for scope, _, _ in scopes}
        return {c.window.scope: c.count for c in counted}
