"""The dev inbox: captures outbound mail in embedded mode (``POSTLINE_DELIVERY=inbox``).

A small SQLite file in the data dir; the relay writes, the API lists (``GET /dev/inbox``)."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from email import message_from_bytes, policy
from pathlib import Path


class DevInbox:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a dev tool: survives a crash, not a power cut
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS mail(id TEXT PRIMARY KEY, received_at REAL, mail_from TEXT, rcpts TEXT, raw BLOB)")

    def _store(self, mail_from: str, rcpts: list[str], raw: bytes) -> str:
        mid = str(uuid.uuid4())
        with self._lock:
            self._db.execute("INSERT INTO mail VALUES (?,?,?,?,?)", (mid, time.time(), mail_from, json.dumps(rcpts), raw))
        return mid

    async def store(self, mail_from: str, rcpts: list[str], raw: bytes) -> str:
        """Keep one delivered message; durable (committed) when it returns."""
        return await asyncio.to_thread(self._store, mail_from, rcpts, raw)

    def list(self, limit: int = 50, to: str | None = None) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, received_at, mail_from, rcpts, raw FROM mail ORDER BY received_at DESC LIMIT ?",
                (limit if not to else 10_000,)).fetchall()
        out = []
        for mid, ts, mail_from, rcpts, raw in rows:
            rcpt_list = json.loads(rcpts)
            if to and to.lower() not in [r.lower() for r in rcpt_list]:
                continue
            msg = message_from_bytes(raw, policy=policy.default)
            out.append({
                "id": mid, "received_at": ts, "mail_from": mail_from, "rcpt_to": rcpt_list,
                "from": str(msg["From"] or ""), "to": str(msg["To"] or ""), "subject": str(msg["Subject"] or ""),
                "message_id": str(msg["Message-ID"] or ""), "postline_id": str(msg["X-Postline-Id"] or ""),
            })
        return out[:limit]

    def raw(self, mid: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT raw FROM mail WHERE id=?", (mid,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()
