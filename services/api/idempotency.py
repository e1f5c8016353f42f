"""``Idempotency-Key``: the same key with the same body within 24 h returns the first
response and sends nothing new; the same key with another body is a 409.

Concurrent requests with one key wait for the first (one in-flight future per key); the
finished response is kept in SQLite in the data dir so restarts keep the promise. Across
API replicas the email id is derived from (service, key), so a duplicate that reaches
another replica gets the same id and the relay's ledger and every consumer absorb it."""
from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from fastapi import HTTPException

TTL_SECONDS = 24 * 3600
_NS = uuid.UUID("0b6f3c56-5d3e-4a55-8d0f-2f1c9e7a4b11")


def email_id_for(service_id: str, key: str) -> str:
    return str(uuid.uuid5(_NS, f"{service_id}|{key}"))


def body_hash(raw: bytes) -> str:
    """Hash of the JSON body, insensitive to key order and whitespace."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()


class IdempotencyStore:
    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS idem(scope TEXT, key TEXT, body_hash TEXT, response TEXT, "
                         "created REAL, PRIMARY KEY (scope, key)) WITHOUT ROWID")
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}

    def _get(self, scope: str, key: str) -> tuple[str, dict] | None:
        with self._lock:
            row = self._db.execute("SELECT body_hash, response, created FROM idem WHERE scope=? AND key=?",
                                   (scope, key)).fetchone()
        if row is None or row[2] < time.time() - TTL_SECONDS:
            return None
        return row[0], json.loads(row[1])

    def _put(self, scope: str, key: str, h: str, response: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO idem VALUES (?,?,?,?,?)",
                             (scope, key, h, json.dumps(response), time.time()))
            self._db.execute("DELETE FROM idem WHERE created < ?", (time.time() - TTL_SECONDS,))

    async def run(self, scope: str, key: str, h: str, produce) -> dict:
        """Return the stored response for (scope, key), or run ``produce()`` once and store it."""
        if len(key) > 255 or not key.isprintable():
            raise HTTPException(400, "Idempotency-Key: at most 255 printable characters")
        slot = (scope, key)
        while slot in self._inflight:
            await asyncio.shield(self._inflight[slot])
        stored = self._get(scope, key)
        if stored is not None:
            return self._replay(stored, h)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[slot] = fut
        try:
            response = await produce()
            self._put(scope, key, h, response)
            return response
        finally:
            del self._inflight[slot]
            fut.set_result(None)

    @staticmethod
    def _replay(stored: tuple[str, dict], h: str) -> dict:
        stored_hash, response = stored
        if stored_hash != h:
            raise HTTPException(409, "Idempotency-Key: already used with a different request body")
        return response

    def close(self) -> None:
        self._db.close()
