"""The embedded log's guarded append: a check run inside the write transaction decides which
records are appended, and its own writes commit (or roll back) with them."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from shared.log.sqlite import SqliteLog


def counter_guard(limit: int):
    """Allows while a counter kept in the log file is under ``limit``; counts what it allows."""
    def guard(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS t_count(k TEXT PRIMARY KEY, n INTEGER)")
        row = conn.execute("SELECT n FROM t_count WHERE k='x'").fetchone()
        n = row[0] if row else 0
        allowed = n < limit
        if allowed:
            conn.execute("INSERT INTO t_count VALUES ('x', ?) ON CONFLICT(k) DO UPDATE SET n=excluded.n", (n + 1,))
        return SimpleNamespace(chosen=[allowed], allowed=allowed)
    return guard


async def test_only_what_the_guard_allows_is_appended(sqlite_log):
    results = await asyncio.gather(*(sqlite_log.append_guarded("t", [(f"k{i}", b"v")], counter_guard(5))
                                     for i in range(12)))
    allowed = [verdict.allowed for verdict, _ in results]
    assert allowed.count(True) == 5
    assert all(bool(positions) == ok for (_, positions), ok in zip(results, allowed))
    assert sum(sqlite_log._ends("t").values()) == 5


async def test_two_processes_share_the_counter(tmp_path):
    """Two logs over one file (as two processes are): the counter is exact across them."""
    a, b = SqliteLog(tmp_path / "log.sqlite3"), SqliteLog(tmp_path / "log.sqlite3")
    await a.start()
    await b.start()
    try:
        results = await asyncio.gather(*(lg.append_guarded("t", [(None, b"v")], counter_guard(7))
                                         for _ in range(10) for lg in (a, b)))
        assert [v.allowed for v, _ in results].count(True) == 7
        assert a.read(lambda conn: conn.execute("SELECT n FROM t_count").fetchone()[0]) == 7
    finally:
        await a.close()
        await b.close()


async def test_a_failing_guard_fails_its_job_only(sqlite_log):
    def broken(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS t_side(x)")
        conn.execute("INSERT INTO t_side VALUES (1)")
        raise ValueError("bug in a guard")

    ok = sqlite_log.append_guarded("t", [(None, b"a")], counter_guard(10))
    bad = sqlite_log.append_guarded("t", [(None, b"b")], broken)
    results = await asyncio.gather(ok, bad, return_exceptions=True)
    assert results[0][0].allowed and isinstance(results[1], ValueError)
    assert sum(sqlite_log._ends("t").values()) == 1
    # the failing guard's own writes were undone with it (DDL included: SQLite's is transactional)
    assert sqlite_log.read(lambda c: c.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='t_side'").fetchone()[0]) == 0
