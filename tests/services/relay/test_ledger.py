"""The delivery ledger across a restart: a final outcome comes back whole (status, SMTP
code and reply, host, time, source address and TLS) so the relay can emit the same event again; lines of the first
format still read; a line torn by a kill mid-write is skipped, and so is a line whose
checksum does not match; a write that fails (full disk) is kept and retried, never lost
and never reported done before it is on disk."""
from __future__ import annotations

import asyncio

import pytest

from services.relay.ledger import Ledger, LedgerUnwritable
from services.relay.outcome import DeliveryResult
from shared import events as ev
from shared import failpoints, metrics


async def test_outcomes_survive_a_restart_whole(tmp_path):
    at = ev.utcnow()
    ok = DeliveryResult("delivered", 250, "2.0.0 OK\nqueued", "mx1", at, source_ip="127.0.0.2",
                        tls=ev.TlsUsed(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", verified="mta-sts"))
    bounced = DeliveryResult("bounced", 550, "5.1.1 no such user", "mx1", at)
    ledger = Ledger(tmp_path)
    await ledger.record([("e1", "a@example.com", "delivered", ok), ("e1", "b@example.com", "bounced", bounced),
                         ("e2", "c@example.com", "failed", DeliveryResult("deferred", 451, "4.3.0 later", None, at))])
    ledger.close()
    with open(tmp_path / "ledger.0.log", "a") as f:
        f.write("e3 d@example.com delivered\n")  # the first format
        f.write('["e4", "x@example.com", "deliv')  # torn by a kill mid-write
    again = Ledger(tmp_path)
    await again.record([("e5", "y@example.com", "delivered", ok)])  # after the torn line
    again.close()
    again = Ledger(tmp_path)
    try:
        got = await again.done("e1", ["a@example.com", "b@example.com", "z@example.com"])
        assert got == {"a@example.com": ("delivered", ok), "b@example.com": ("bounced", bounced)}
        assert await again.done("e5", ["y@example.com"]) == {"y@example.com": ("delivered", ok)}
        assert await again.done("e2", ["c@example.com"]) == {
            "c@example.com": ("failed", DeliveryResult("deferred", 451, "4.3.0 later", None, at))}
        assert await again.done("e3", ["d@example.com"]) == {"d@example.com": ("delivered",
                                                                                DeliveryResult("delivered"))}
        assert await again.done("e4", ["x@example.com"]) == {}
    finally:
        again.close()


async def test_a_record_whose_checksum_does_not_match_is_skipped(tmp_path):
    ok = DeliveryResult("delivered", 250, "2.0.0 OK", "mx1", ev.utcnow())
    ledger = Ledger(tmp_path)
    await ledger.record([("e1", "a@example.com", "delivered", ok), ("e2", "b@example.com", "delivered", ok),
                         ("e3", "c@example.com", "delivered", ok)])
    ledger.close()
    path = tmp_path / "ledger.0.log"
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    corrupt = lines[1].replace(b"b@example.com", b"x@example.com")  # same length: only the checksum tells
    torn = lines[2][: len(lines[2]) // 2]  # a write cut short by a full disk or a kill
    path.write_bytes(lines[0] + corrupt + torn)
    again = Ledger(tmp_path)
    await again.record([("e4", "d@example.com", "delivered", ok)])  # starts a new line after the torn one
    again.close()
    with open(path, "ab") as f:
        f.write(b"\0" * 64 + b"\n")  # a page of zeros (power loss)
    again = Ledger(tmp_path)
    try:
        assert await again.done("e1", ["a@example.com"]) == {"a@example.com": ("delivered", ok)}
        assert await again.done("e2", ["b@example.com", "x@example.com"]) == {}
        assert await again.done("e3", ["c@example.com"]) == {}
        assert await again.done("e4", ["d@example.com"]) == {"d@example.com": ("delivered", ok)}
    finally:
        again.close()


async def test_a_failed_write_keeps_the_outcomes_and_retries_until_the_disk_allows(tmp_path, monkeypatch):
    """A full disk at the ledger's write (failpoint): ``record`` neither raises nor returns,
    the ledger says it is not writable and holds new transactions back; once the write
    succeeds the outcomes are on disk and work goes on — nothing is marked done before that."""
    monkeypatch.setattr("services.relay.ledger.RETRY_FIRST", 0.05)
    ok = DeliveryResult("delivered", 250, "2.0.0 OK", "mx1", ev.utcnow())
    ledger = Ledger(tmp_path)
    errors = metrics.RELAY_LEDGER_WRITE_ERRORS._value.get()
    failpoints.configure("relay.ledger.write", 1.0)
    try:
        recording = asyncio.create_task(ledger.record([("e1", "a@example.com", "delivered", ok)]))
        while ledger.writable:
            await asyncio.sleep(0.01)
        gate = asyncio.create_task(ledger.until_writable())  # a new SMTP transaction would wait here
        while metrics.RELAY_LEDGER_WRITE_ERRORS._value.get() < errors + 3:  # the first write and two retries
            await asyncio.sleep(0.01)
        assert not ledger.writable and not recording.done() and not gate.done()
        assert metrics.RELAY_LEDGER_WRITABLE.labels(tmp_path.name)._value.get() == 0
        assert await ledger.done("e1", ["a@example.com"]) == {}  # not recorded: not done
    finally:
        failpoints.configure("relay.ledger.write", None)
    await recording
    await gate
    assert ledger.writable and metrics.RELAY_LEDGER_WRITABLE.labels(tmp_path.name)._value.get() == 1
    ledger.close()
    again = Ledger(tmp_path)
    assert await again.done("e1", ["a@example.com"]) == {"a@example.com": ("delivered", ok)}
    again.close()


async def test_a_relay_stopping_while_the_disk_is_full_gives_the_outcomes_up(tmp_path):
    ok = DeliveryResult("delivered", 250, "2.0.0 OK", "mx1", ev.utcnow())
    ledger = Ledger(tmp_path)
    failpoints.configure("relay.ledger.write", 1.0)
    try:
        recording = asyncio.create_task(ledger.record([("e1", "a@example.com", "delivered", ok)]))
        while ledger.writable:
            await asyncio.sleep(0.01)
        assert ledger.give_up() == 1
        with pytest.raises(LedgerUnwritable):
            await recording  # its request is not committed: delivered again after the restart
        with pytest.raises(LedgerUnwritable):
            await ledger.until_writable()
    finally:
        failpoints.configure("relay.ledger.write", None)
        ledger.close()
    assert await Ledger(tmp_path).done("e1", ["a@example.com"]) == {}
