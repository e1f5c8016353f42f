"""Appends fail fast: ``DeadlineLog`` over the real embedded log, whose writer is stalled
by another connection holding SQLite's write lock, raises ``LogTimeout`` (a
``LogUnavailable``) after the timeout instead of waiting (SQLite's own busy timeout is 30 s); once the lock is gone the
same log appends again (the timed-out record was written late, which is why the API's 503
says "retry with the same Idempotency-Key"), and ``ping`` reports the writer alive."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from shared.log.deadline import DeadlineLog
from shared.log.port import LogTimeout
from shared.log.sqlite import SqliteLog


async def test_a_stalled_append_times_out_then_the_log_recovers(tmp_path):
    log = DeadlineLog(SqliteLog(tmp_path / "log.sqlite3"), timeout=0.5)
    await log.start()
    try:
        assert (await log.append("t", "k", b"first"))[1] == 0
        assert await log.ping()
        blocker = sqlite3.connect(tmp_path / "log.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        assert log.writable()
        with pytest.raises(LogTimeout):
            await log.append("t", "k", b"stalled")
        assert not log.writable()  # the API's /readyz: the last append failed
        blocker.execute("ROLLBACK")
        blocker.close()
        _, offset = await asyncio.wait_for(log.append("t", "k", b"after"), 10)
        assert offset == 2  # the timed-out record landed late (offset 1): "not acknowledged", not "not written"
        assert log.writable()
    finally:
        await log.close()
