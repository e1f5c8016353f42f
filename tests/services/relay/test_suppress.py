"""The suppression step on a real embedded log and control plane: applied twice (a redelivered
request, or a second relay that has not seen the first save yet) it leaves one entry."""
from __future__ import annotations

from services.relay.bounce_class import classify
from services.relay.suppress import Suppressor
from shared import events as ev
from shared.control.plane import ControlPlane
from tests.support.inproc import api_runtime


def bounced(reply: str, code: int = 550, rcpt: str = "Nobody@Example.com") -> ev.Bounced:
    c = classify(code, reply)
    return ev.Bounced(id=ev.derived_id("m1", rcpt, "bounced"), workspace_id="default", service_id="s1",
                      email_id="m1", recipient=rcpt, bounce_type=c.bounce_type, bounce_class=c.bounce_class,
                      smtp_code=code, smtp_reply=reply)


async def control_records(rt) -> list[ev.SuppressionSaved]:
    consumer = rt.log.consumer([ev.Topic.CONTROL], group=None)
    await consumer.start()
    out = []
    while True:
        out += [e for e in (ev.decode(r.value) for r in await consumer.poll(max_records=1000, timeout=0.2))
                if isinstance(e, ev.SuppressionSaved)]
        if await consumer.caught_up():
            break
    await consumer.close()
    return out


async def test_hard_bounce_suppresses_once_and_a_second_relay_writes_the_same_record(tmp_path):
    async with api_runtime(tmp_path / "data") as (rt, _):
        event = bounced("5.1.1 <nobody@example.com>: User unknown")
        first = await Suppressor(rt.control, None).apply(event, classify(event.smtp_code, event.smtp_reply))
        assert (first.email, first.reason, first.source_email_id) == ("nobody@example.com", "hard_bounce", "m1")
        assert rt.control.state.suppression("s1", "nobody@example.com") == first
        # redelivered on the same relay: already suppressed, nothing written
        assert await Suppressor(rt.control, None).apply(event, classify(event.smtp_code, event.smtp_reply)) is None
        # a relay that took the partition over before it saw the save writes the identical entry
        other = ControlPlane(rt.log)
        other.state = type(rt.control.state)()  # as if it had not replayed the control topic yet
        again = await Suppressor(other, None).apply(event, classify(event.smtp_code, event.smtp_reply))
        assert again == first
        records = await control_records(rt)
        assert len({r.model_dump_json() for r in records}) == 1


async def test_refusals_that_are_not_about_the_address_do_not_suppress(tmp_path):
    async with api_runtime(tmp_path / "data") as (rt, _):
        s = Suppressor(rt.control, None)
        for reply in ("5.7.1 blocked using zen.spamhaus.org", "5.7.26 unauthenticated email", "5.3.4 too big",
                      "5.2.2 mailbox full"):
            e = bounced(reply, rcpt="someone@example.com")
            assert await s.apply(e, classify(550, reply)) is None, reply
        assert rt.control.state.suppression("s1", "someone@example.com") is None
        assert await control_records(rt) == []
