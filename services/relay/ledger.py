"""The delivery ledger: final outcomes per (message id, recipient).

A request redelivered after a crash (between the SMTP 250 and the offset commit) finds its
recipients here and is not sent again; the outcome kept here (status, SMTP code and reply)
lets the relay emit the outcome event again, since the crash may have come before it was.

Storage: an append-only file of checksummed lines (services/relay/ledger_format.py; no
fsync: a killed process loses nothing that reached the kernel; after a power loss the worst
case is one resend, never a loss) and an in-memory index rebuilt from the files at start.
Writes are grouped (outcomes recorded while a write is under way go out together in the
next one) and run on a thread of their own: ``write()`` releases the GIL, and on the event
loop's thread getting it back from the busy DKIM threads cost ~0.1 ms per write (cProfile,
bench run). Only entries whose request offset is not yet committed matter, so the ledger
keeps the current file and the previous one and rotates at ``rotate_at`` lines.

A write that fails (ENOSPC, EIO…) is not an error for the caller: the outcomes stay in
memory and the write is tried again (``RETRY_FIRST`` s, doubling to ``RETRY_MAX``) until it
succeeds, ``record`` returning only then; meanwhile ``writable`` is False and
``until_writable`` holds new SMTP transactions back, so the relay stops taking work instead
of sending mail it cannot record (docs/delivery.md, "When the ledger cannot be written")."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from services.relay import ledger_format
from services.relay.outcome import DeliveryResult, ResultStatus
from shared.events import TlsUsed
from shared import failpoints, metrics

log = logging.getLogger(__name__)
Row = tuple[str, str, str, DeliveryResult]  # email id, recipient, final status, the outcome
RETRY_FIRST, RETRY_MAX = 1.0, 5.0


def path_of(o: DeliveryResult) -> dict | None:
    """The ledger's ``path`` field: where the outcome's session left from and its TLS, so an
    outcome emitted again after a restart is the same event."""
    if o.source_ip is None and o.tls is None and o.failure is None:
        return None
    path = {"source_ip": o.source_ip, "tls": o.tls.model_dump() if o.tls else None}
    return path | {"failure": o.failure} if o.failure else path


def path_fields(path: dict | None) -> dict:
    """``path_of`` reversed, as ``DeliveryResult`` keyword arguments."""
    if not path:
        return {}
    return {"source_ip": path.get("source_ip"), "tls": TlsUsed(**path["tls"]) if path.get("tls") else None,
            "failure": path.get("failure")}


class LedgerUnwritable(OSError):
    """The ledger could not record outcomes and the relay is stopping: their requests stay
    uncommitted (delivered again, once, after the restart)."""


class Ledger:
    def __init__(self, directory: Path, rotate_at: int = 1_000_000):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rotate_at = rotate_at
        self._done: dict[tuple[str, str], tuple] = {}  # (email id, recipient) → (status, code, reply, host, time)
        self._previous: dict[tuple[str, str], tuple] = {}
        files = sorted(self.dir.glob("ledger.*.log"), key=lambda p: int(p.name.split(".")[1]))
        self._gen = int(files[-1].name.split(".")[1]) if files else 0
        text = ""
        for path in files[-2:]:
            target = self._done if path == files[-1] else self._previous
            text = path.read_text(errors="replace")
            for line in text.splitlines():
                row = ledger_format.parse(line)
                if row:
                    target[(row[0], row[1])] = tuple(row[2:])
        self._lines = len(self._done)
        self._fd = os.open(self._path(self._gen), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._torn = bool(text) and not text.endswith("\n")  # torn by a kill: the next write starts a new line
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ledger")
        self._queued: list[tuple[list[Row], asyncio.Future]] = []
        self._writing: asyncio.Task | None = None
        self._ok = asyncio.Event()
        self._ok.set()
        self._failure: tuple[OSError, float, int] | None = None  # (first error, since, failed writes)
        self._stopping = False
        self._gauge = metrics.RELAY_LEDGER_WRITABLE.labels(self.dir.name)
        self._gauge.set(1)

    def _path(self, gen: int) -> Path:
        return self.dir / f"ledger.{gen}.log"

    @property
    def writable(self) -> bool:
        """False from a failed write until a write succeeds again (for /readyz)."""
        return self._failure is None

    async def until_writable(self) -> None:
        """Return at once while the ledger is writable; else wait until it is again. Raises
        ``LedgerUnwritable`` once the relay gave up (``give_up``)."""
        await self._ok.wait()
        if self._stopping and self._failure is not None:
            raise LedgerUnwritable(*self._failure[0].args)

    async def done(self, email_id: str, recipients: list[str]) -> dict[str, tuple[str, DeliveryResult]]:
        """Recipients of ``email_id`` that already have a final outcome: ``{recipient: (status,
        outcome)}``, status one of delivered, bounced, failed."""
        out = {}
        for r in recipients:
            kept = self._done.get((email_id, r)) or self._previous.get((email_id, r))
            if kept:
                status, code, reply, host, at, path = kept
                kind: ResultStatus = "delivered" if status == "delivered" else "bounced" if status == "bounced" \
                    else "deferred"  # failed: deferred to the end
                out[r] = (status, DeliveryResult(kind, code, reply, host, datetime.fromisoformat(at) if at else None,
                                                 **path_fields(path)))
        return out

    async def record(self, rows: list[Row]) -> None:
        """Record ``(email_id, recipient, status, outcome)``; in the kernel when it returns.
        While writes fail this waits (retrying) rather than raising; raises
        ``LedgerUnwritable`` only after ``give_up``."""
        if not rows:
            return
        if self._stopping and self._failure is not None:
            raise LedgerUnwritable(*self._failure[0].args)
        done = asyncio.get_running_loop().create_future()
        self._queued.append((rows, done))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_queued())
        await done

    async def _write_queued(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queued:
                batch = self._queued[:]
                rows = [[e, r, s, o.smtp_code, o.smtp_reply, o.mx_host, o.at.isoformat() if o.at else None, path_of(o)]
                        for rows, _ in batch for e, r, s, o in rows]
                data = b"".join(map(ledger_format.encode, rows))
                try:
                    await loop.run_in_executor(self._writer, self._append, b"\n" + data if self._torn else data)
                except OSError as exc:  # disk full, I/O error: keep the rows, pause, try again
                    await self._pause(exc)
                    continue
                del self._queued[:len(batch)]
                self._mark(rows)
                self._recovered()
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writing = None

    def _append(self, data: bytes) -> None:
        """Write all of ``data`` (a short write goes on); on OSError part of it may be in the
        file, so the next write starts with a newline (a line torn here is then skipped)."""
        self._torn = True
        failpoints.io_error("relay.ledger.write")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._torn = False

    async def _pause(self, exc: OSError) -> None:
        """Note a failed write (one log line for the whole outage) and wait before the next try."""
        metrics.RELAY_LEDGER_WRITE_ERRORS.inc()
        if self._failure is None:
            self._failure = (exc, time.monotonic(), 0)
            self._ok.clear()
            self._gauge.set(0)
            log.error("delivery ledger %s cannot be written (%s): this relay takes no new work until it can; "
                      "%d outcomes kept in memory, written as soon as the disk allows", self.dir, exc,
                      sum(len(rows) for rows, _ in self._queued))
        first, since, failed = self._failure
        self._failure = (first, since, failed + 1)
        if self._stopping:
            self._abandon()
            return
        await asyncio.sleep(min(RETRY_MAX, RETRY_FIRST * 2 ** failed))

    def _recovered(self) -> None:
        if self._failure is None:
            return
        _, since, failed = self._failure
        self._failure = None
        self._ok.set()
        self._gauge.set(1)
        log.warning("delivery ledger %s writable again after %.0f s and %d failed writes; the relay takes work again",
                    self.dir, time.monotonic() - since, failed)

    def give_up(self) -> int:
        """The relay is stopping: from now on, while writes fail, every waiting ``record`` and
        ``until_writable`` fails with ``LedgerUnwritable`` (their requests stay uncommitted).
        Returns how many outcomes were left unwritten now."""
        self._stopping = True
        return self._abandon() if self._failure is not None else 0

    def _abandon(self) -> int:
        batch, self._queued = self._queued, []
        error = self._failure[0].args if self._failure is not None else ()
        for _, done in batch:
            if not done.done():
                done.set_exception(LedgerUnwritable(*error))
        self._ok.set()  # waiters wake and raise
        lost = sum(len(rows) for rows, _ in batch)
        log.error("stopping with %d delivery outcomes not in the ledger: their requests are not committed and "
                  "will be delivered again, once, after the restart", lost)
        return lost

    def _mark(self, rows: list[list]) -> None:
        self._done.update(((e, r), tuple(rest)) for e, r, *rest in rows)
        self._lines += len(rows)
        if self._lines >= self.rotate_at:
            self._rotate()

    def _rotate(self) -> None:
        try:  # the new file first: if it cannot be made, the current one goes on (tried again next write)
            fd = os.open(self._path(self._gen + 1), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            log.warning("cannot start a new delivery ledger file (%s); the current one goes on", exc)
            return
        os.close(self._fd)
        old = self._path(self._gen - 1)
        if old.exists():
            old.unlink()
        self._gen += 1
        self._previous, self._done, self._lines, self._fd = self._done, {}, 0, fd

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        os.close(self._fd)
