"""Installation-wide shaping state in one SQLite file of the data dir (``shaping.sqlite3``).

Every relay process of an embedded installation opens the same file; each decision runs in
one ``BEGIN IMMEDIATE`` transaction, so it is exact across processes without any process
knowing how many others run:

- connection slots are leases (a row per open SMTP session, with an expiry renewed at each
  use; a crashed process's leases lapse after ``LEASE_TTL``);
- the rate is one schedule per provider (``next_at``: the earliest start of the next
  message, advanced by ``1/rate`` per message — a GCRA), so two processes interleave their
  messages instead of each sending at the full rate;
- the adaptive state (current rate, paused until, last reply, recent policy blocks) is a row
  per provider that every process reads and changes;
- the recipients waiting for a provider (the page's ``queued``) are a row per process, which
  it writes at most once a second (and which lapses ``QUEUE_TTL`` after its process died).

The file holds no durable data (a lost file resets rates to their configured values) and is
written with ``synchronous=OFF``. On Kafka each replica has its own data dir: there the
relays share through the log instead (``gossip.py``)."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

from services.relay.shaping.port import MIN_RATE_SHARE, QUEUE_TTL, ProviderView, ShapingStore
from shared import failpoints

T = TypeVar("T")
log = logging.getLogger(__name__)
LEASE_TTL = 60.0  # seconds a connection lease lives without being renewed
QUEUE_WRITE_EVERY = 1.0  # seconds between two writes of a process's queue counts
CALM_FOR = 1.0  # seconds a calm provider seen by reserve spares clean its transaction

SCHEMA_VERSION = 2  # a file of another version is emptied (it holds nothing durable)
TABLES = ("leases", "providers", "warmup", "queues")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS leases(provider TEXT NOT NULL, lease TEXT PRIMARY KEY, expires REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_provider ON leases(provider, expires)",
    "CREATE TABLE IF NOT EXISTS providers(provider TEXT PRIMARY KEY, next_at REAL NOT NULL DEFAULT 0, "
    "rate REAL, paused_until REAL NOT NULL DEFAULT 0, last_throttle REAL NOT NULL DEFAULT 0, "
    "last_step REAL NOT NULL DEFAULT 0, last_reply TEXT, last_reply_at REAL, blocks INTEGER NOT NULL DEFAULT 0, "
    "blocks_since REAL NOT NULL DEFAULT 0, paused_for_blocks INTEGER NOT NULL DEFAULT 0, alert_scope TEXT, "
    "alert_since REAL)",
    "CREATE TABLE IF NOT EXISTS queues(provider TEXT NOT NULL, owner TEXT NOT NULL, n INTEGER NOT NULL, "
    "at REAL NOT NULL, PRIMARY KEY (provider, owner)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS warmup(ip TEXT NOT NULL, provider TEXT NOT NULL, day TEXT NOT NULL, "
    "n INTEGER NOT NULL, PRIMARY KEY (ip, provider, day)) WITHOUT ROWID",
)


class SqliteShapingStore(ShapingStore):
    """The shared file; every method is a short transaction run off the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.owner = uuid.uuid4().hex  # this process's rows of the queue counts
        self._queue_counts: dict[str, int] = {}
        self._queue_changed: set[str] = set()
        self._queue_writer: asyncio.Task[None] | None = None
        self._queue_written_at = float("-inf")
        self._calm_at: dict[str, float] = {}  # provider -> when reserve last found it calm (monotonic)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for table in TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            self._conn = conn
        return self._conn

    def _tx(self, job: Callable[[sqlite3.Connection, float], T]) -> T:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = job(conn, time.time())
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

    async def run(self, job: Callable[[sqlite3.Connection, float], T]) -> T:
        return await asyncio.to_thread(self._tx, job)

    # ---------------------------------------------------------------- connections
    async def lease(self, provider: str, max_connections: int) -> str | None:
        """A connection slot for ``provider`` (its lease id), or None when all are taken."""
        def job(conn: sqlite3.Connection, now: float) -> str | None:
            conn.execute("DELETE FROM leases WHERE provider=? AND expires<?", (provider, now))
            (held,) = conn.execute("SELECT COUNT(*) FROM leases WHERE provider=?", (provider,)).fetchone()
            if held >= max_connections:
                return None
            lease = uuid.uuid4().hex
            conn.execute("INSERT INTO leases(provider, lease, expires) VALUES (?,?,?)", (provider, lease, now + LEASE_TTL))
            return lease
        return await self.run(job)

    async def renew(self, lease: str) -> bool:
        failpoints.io_error("relay.shaping.renew")  # tests: the file cannot be written (a full disk)

        def job(conn: sqlite3.Connection, now: float) -> bool:
            return conn.execute("UPDATE leases SET expires=? WHERE lease=? AND expires>=?",
                                (now + LEASE_TTL, lease, now)).rowcount == 1
        return await self.run(job)

    async def release(self, lease: str) -> None:
        await self.run(lambda conn, now: conn.execute("DELETE FROM leases WHERE lease=?", (lease,)))

    async def queued(self, provider: str, n: int) -> None:
        """Counted in this process; its row in the file follows within ``QUEUE_WRITE_EVERY``
        (one transaction for every change of that second), so a message waiting for its turn
        no longer costs two transactions (~0.15 ms of CPU each, `--only shaping`'s
        ``shaper_cost``); the page's count lags at most that second."""
        self._queue_counts[provider] = self._queue_counts.get(provider, 0) + n
        self._queue_changed.add(provider)
        if self._queue_writer is None or self._queue_writer.done():
            self._queue_writer = asyncio.create_task(self._write_queue_counts())

    async def queue_counts_written(self) -> None:
        """Returns once every count changed so far is in the file."""
        while self._queue_writer is not None and not self._queue_writer.done():
            await asyncio.shield(self._queue_writer)

    async def _write_queue_counts(self) -> None:
        """This process's changed counts, the first change at once, then at most once per
        ``QUEUE_WRITE_EVERY`` while they keep changing; a write that fails is tried again then."""
        while self._queue_changed:
            if (wait := self._queue_written_at + QUEUE_WRITE_EVERY - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            counts = {p: self._queue_counts[p] for p in self._queue_changed}
            self._queue_changed.clear()
            self._queue_written_at = time.monotonic()
            try:
                await self.run(lambda conn, now: conn.executemany(
                    "INSERT INTO queues(provider, owner, n, at) VALUES (?,?,?,?) ON CONFLICT(provider, owner) "
                    "DO UPDATE SET n=excluded.n, at=excluded.at", [(p, self.owner, n, now) for p, n in counts.items()]))
            except sqlite3.Error:
                log.warning("shaping: could not write the queue counts; trying again", exc_info=True)
                self._queue_changed.update(counts)

    # ---------------------------------------------------------------- rate
    async def reserve(self, provider: str, configured: float) -> float:
        """A start time for one message (epoch seconds; the caller waits until then): after
        the provider's pause, and ``1/rate`` after the previous one reserved by any process.
        Notes whether the provider was calm (its rate not backed off, no pause for blocks):
        ``clean`` right after then has nothing to do."""
        def job(conn: sqlite3.Connection, now: float) -> tuple[float, bool]:
            row = conn.execute("SELECT next_at, rate, paused_until, paused_for_blocks FROM providers WHERE provider=?",
                               (provider,)).fetchone()
            next_at, rate, paused_until, for_blocks = row if row else (0.0, None, 0.0, 0)
            calm = rate is None and not for_blocks
            rate = min(rate or configured, configured)
            start = max(now, next_at, paused_until)
            conn.execute("INSERT INTO providers(provider, next_at) VALUES (?,?) ON CONFLICT(provider) DO UPDATE "
                         "SET next_at=excluded.next_at", (provider, start + 1.0 / rate))
            return start, calm
        start, calm = await self.run(job)
        if calm:
            self._calm_at[provider] = time.monotonic()
        else:
            self._calm_at.pop(provider, None)
        return start

    async def paused_until(self, provider: str) -> float:
        def job(conn: sqlite3.Connection, now: float) -> float:
            row = conn.execute("SELECT paused_until FROM providers WHERE provider=?", (provider,)).fetchone()
            return float(row[0]) if row else 0.0
        return await self.run(job)

    # ---------------------------------------------------------------- adaptive
    async def throttled(self, provider: str, configured: float, reply: str, pause: float) -> float:
        """A throttling reply: halve the current rate (not below 1/16 of the configured one),
        pause ``pause`` seconds. Returns the new rate."""
        failpoints.io_error("relay.shaping.throttled")  # tests: the file cannot be written (a full disk)

        def job(conn: sqlite3.Connection, now: float) -> float:
            row = conn.execute("SELECT rate, paused_until FROM providers WHERE provider=?", (provider,)).fetchone()
            current, paused_until = row if row else (None, 0.0)
            current = min(current or configured, configured)
            # replies to messages sent before this pause began come back together: one halving per pause
            rate = current if paused_until > now else max(current / 2, configured * MIN_RATE_SHARE)
            conn.execute("INSERT INTO providers(provider, rate, paused_until, last_throttle, last_reply, last_reply_at, "
                         "next_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(provider) DO UPDATE SET rate=excluded.rate, "
                         "paused_until=MAX(paused_until, excluded.paused_until), last_throttle=excluded.last_throttle, "
                         "last_reply=excluded.last_reply, last_reply_at=excluded.last_reply_at",
                         (provider, rate, now + pause, now, reply[:300], now, 0.0))
            return float(rate)
        return await self.run(job)

    async def blocked(self, provider: str, reply: str, spike: int, pause: float, scope: str) -> float | None:
        """A 5.7.x policy block; when it completes a spike (``spike`` within a minute) and the
        provider was not paused for blocks yet, it is paused now: returns when (the alert's
        episode start; ``scope`` names whose message completed it, for the clearing)."""
        def job(conn: sqlite3.Connection, now: float) -> float | None:
            conn.execute("INSERT INTO providers(provider) VALUES (?) ON CONFLICT(provider) DO NOTHING", (provider,))
            blocks, since, already = conn.execute("SELECT blocks, blocks_since, paused_for_blocks FROM providers "
                                                  "WHERE provider=?", (provider,)).fetchone()
            blocks, since = (blocks + 1, since) if now - since < 60 else (1, now)
            raise_it = blocks >= spike and not already
            conn.execute("UPDATE providers SET blocks=?, blocks_since=?, last_reply=?, last_reply_at=?, "
                         "paused_until=CASE WHEN ? THEN ? ELSE paused_until END, "
                         "paused_for_blocks=CASE WHEN ? THEN 1 ELSE paused_for_blocks END WHERE provider=?",
                         (blocks, since, reply[:300], now, raise_it, now + pause, raise_it, provider))
            if raise_it:
                conn.execute("UPDATE providers SET alert_scope=?, alert_since=? WHERE provider=?", (scope, now, provider))
            return now if raise_it else None
        return await self.run(job)

    async def clean(self, provider: str, configured: float, recovery: float) -> list[tuple[str, float]]:
        """As the port says; the alert is cleared once: by the first process to see the end.
        No transaction when this process's ``reserve`` found the provider calm within
        ``CALM_FOR`` (the usual case: nothing backed off, nothing paused): a throttle or a block
        pause another process began since is seen at the next message's ``reserve``."""
        if time.monotonic() - self._calm_at.get(provider, float("-inf")) <= CALM_FOR:
            return []
        failpoints.io_error("relay.shaping.clean")  # tests: the file cannot be written (a full disk)

        def job(conn: sqlite3.Connection, now: float) -> list[tuple[str, float]]:
            row = conn.execute("SELECT rate, last_throttle, last_step, paused_until, paused_for_blocks, alert_scope, "
                               "alert_since FROM providers WHERE provider=?", (provider,)).fetchone()
            if row is None:
                return []
            rate, last_throttle, last_step, paused_until, for_blocks, scope, since = row
            if rate is not None and rate < configured and now - max(last_throttle, last_step) >= recovery:
                grown = rate + configured / 4
                conn.execute("UPDATE providers SET rate=?, last_step=? WHERE provider=?",
                             (None if grown >= configured else grown, now, provider))
            if for_blocks and paused_until <= now:
                conn.execute("UPDATE providers SET paused_for_blocks=0, blocks=0 WHERE provider=?", (provider,))
                return [(scope or "|", since or now)]
            return []
        return await self.run(job)

    # ---------------------------------------------------------------- warm-up
    async def take_warmup(self, ip: str, provider: str, day: str, cap: int) -> bool:
        """Count one message from ``ip`` to ``provider`` on ``day`` if fewer than ``cap`` were."""
        def job(conn: sqlite3.Connection, now: float) -> bool:
            row = conn.execute("SELECT n FROM warmup WHERE ip=? AND provider=? AND day=?", (ip, provider, day)).fetchone()
            if row is not None and row[0] >= cap:
                return False
            conn.execute("INSERT INTO warmup(ip, provider, day, n) VALUES (?,?,?,1) ON CONFLICT(ip, provider, day) "
                         "DO UPDATE SET n=n+1", (ip, provider, day))
            conn.execute("DELETE FROM warmup WHERE day<?", (day,))  # yesterday's counts are done with
            return True
        return await self.run(job)

    def sent_today(self, day: str) -> dict[str, dict[str, int]]:
        """Messages counted per address and provider on ``day``."""
        def job(conn: sqlite3.Connection, now: float) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for ip, provider, n in conn.execute("SELECT ip, provider, n FROM warmup WHERE day=?", (day,)):
                out.setdefault(ip, {})[provider] = n
            return out
        return self._tx(job)

    def views(self) -> list[ProviderView]:
        """Every provider with state (read-only; the API's view)."""
        def job(conn: sqlite3.Connection, now: float) -> list[ProviderView]:
            held = dict(conn.execute("SELECT provider, COUNT(*) FROM leases WHERE expires>=? GROUP BY provider",
                                     (now,)).fetchall())
            queued = dict(conn.execute("SELECT provider, SUM(n) FROM queues WHERE at>=? GROUP BY provider",
                                       (now - QUEUE_TTL,)).fetchall())
            rows = {p: rest for p, *rest in conn.execute("SELECT provider, rate, paused_until, last_reply, last_reply_at, "
                                                         "paused_for_blocks FROM providers")}
            out = []
            for p in sorted(set(rows) | {p for p, n in queued.items() if n}):
                rate, paused_until, reply, at, blocks = rows.get(p, (None, 0.0, None, None, 0))
                out.append(ProviderView(p, rate, paused_until if paused_until > now else 0.0, rate is not None, reply,
                                        at, int(held.get(p, 0)), bool(blocks), max(0, int(queued.get(p) or 0))))
            return out
        return self._tx(job)
