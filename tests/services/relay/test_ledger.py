"""The delivery ledger across a restart: a final outcome comes back whole (status, SMTP
code and reply, host, time) so the relay can emit the same event again; lines of the first
format still read; a line torn by a kill mid-write is skipped."""
from __future__ import annotations

from services.relay.ledger import Ledger
from services.relay.outcome import DeliveryResult
from shared import events as ev


async def test_outcomes_survive_a_restart_whole(tmp_path):
    at = ev.utcnow()
    ok = DeliveryResult("delivered", 250, "2.0.0 OK\nqueued", "mx1", at)
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
