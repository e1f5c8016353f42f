"""The delivery ledger: final outcomes per (message id, recipient).

A request redelivered after a crash (between the SMTP 250 and the offset commit) finds
its recipients here and is not sent again. Only final outcomes are recorded; a crash
between the remote 250 and the ledger write resends (at-least-once, never at-most-once)."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path


class Ledger:
    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (the test that
        # matters here); after a power loss the worst case is one resend, never a loss.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS ledger(email_id TEXT, recipient TEXT, status TEXT, at REAL, "
                         "PRIMARY KEY (email_id, recipient)) WITHOUT ROWID")
        self._lock = threading.Lock()

    def _done(self, email_id: str, recipients: list[str]) -> set[str]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT recipient FROM ledger WHERE email_id=? AND recipient IN ({','.join('?' * len(recipients))})",
                (email_id, *recipients)).fetchall()
        return {r for (r,) in rows}

    async def done(self, email_id: str, recipients: list[str]) -> set[str]:
        """Recipients of ``email_id`` that already have a final outcome."""
        return self._done(email_id, recipients) if recipients else set()

    def record_now(self, rows: list[tuple[str, str, str]]) -> None:
        """Record synchronously (no await between a server's reply and this write)."""
        self._record(rows)

    def _record(self, rows: list[tuple[str, str, str]]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO ledger VALUES (?,?,?,?)", [(*r, now) for r in rows])

    async def record(self, rows: list[tuple[str, str, str]]) -> None:
        """Record ``(email_id, recipient, status)`` final outcomes; durable when it returns."""
        if rows:
            await asyncio.to_thread(self._record, rows)

    def close(self) -> None:
        self._db.close()
