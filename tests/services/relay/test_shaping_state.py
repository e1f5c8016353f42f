"""The shaper's decisions on its real shared file (services/relay/shaping/): which replies
throttle, the rate schedule shared by two stores (two processes), halving and recovery, and
the `provider_paused` alert raised once on a spike of policy blocks and cleared on resume,
and the queue counts of several processes (a dead one's lapsing)."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest

from services.relay.outcome import DeliveryResult, PartlySent, from_reply
from services.relay.shaping.replies import classify
from services.relay.shaping.shaper import PAUSE_RECHECK, Shaper, sending_for
from services.relay.shaping.port import QUEUE_TTL
from services.relay.shaping.store import SqliteShapingStore
from shared import events as ev
from shared import failpoints
from shared.consumer_loop import BatchLost
from shared.control.state import ControlState
from shared.settings import Settings


def test_throttling_replies_and_policy_blocks_are_told_apart():
    assert classify(421, "4.7.28 Our system has detected an unusual rate of unsolicited mail") == "throttle"
    assert classify(451, "4.7.500 Server busy. Please try again later from [1.2.3.4]") == "throttle"
    assert classify(450, "too many connections from your IP") == "throttle"
    assert classify(550, "5.7.1 Service unavailable, Client host blocked using Spamhaus") == "block"
    assert classify(550, "5.1.1 no such user") is None
    assert classify(452, "4.2.2 mailbox full") is None
    assert classify(250, "2.0.0 OK") is None and classify(None, None) is None


def test_two_stores_on_one_file_share_one_schedule(tmp_path):
    a, b = SqliteShapingStore(tmp_path / "s.sqlite3"), SqliteShapingStore(tmp_path / "s.sqlite3")

    async def both() -> list[float]:
        starts = await asyncio.gather(*(s.reserve("google", 10.0) for s in (a, b) for _ in range(10)))
        return sorted(starts)

    starts = asyncio.run(both())
    gaps = [round(y - x, 6) for x, y in zip(starts, starts[1:])]
    assert all(g >= 0.1 - 1e-6 for g in gaps), gaps  # 20 starts, 0.1 s apart, whichever store reserved them


def test_leases_are_installation_wide_and_given_back(tmp_path):
    a, b = SqliteShapingStore(tmp_path / "s.sqlite3"), SqliteShapingStore(tmp_path / "s.sqlite3")

    async def run() -> None:
        first = await a.lease("microsoft", 2)
        second = await b.lease("microsoft", 2)
        assert first and second and await a.lease("microsoft", 2) is None and await b.lease("microsoft", 2) is None
        await a.release(first)
        assert await b.lease("microsoft", 2) is not None

    asyncio.run(run())


def test_throttling_halves_once_per_pause_and_clean_time_recovers(tmp_path):
    store = SqliteShapingStore(tmp_path / "s.sqlite3")

    async def run() -> None:
        assert await store.throttled("yahoo", 8.0, "421 4.7.0 try again later", pause=0.2) == 4.0
        assert await store.throttled("yahoo", 8.0, "421 4.7.0 try again later", pause=0.2) == 4.0  # same pause
        await asyncio.sleep(0.25)
        assert await store.throttled("yahoo", 8.0, "421 4.7.0 try again later", pause=0.01) == 2.0
        await asyncio.sleep(0.05)
        await store.clean("yahoo", 8.0, recovery=0.02)
        assert store.views()[0].rate == 4.0  # one step: a quarter of the configured rate

    asyncio.run(run())


def test_clean_after_a_calm_reserve_costs_nothing_and_a_throttle_elsewhere_is_seen_next_message(tmp_path):
    a, b = SqliteShapingStore(tmp_path / "s.sqlite3"), SqliteShapingStore(tmp_path / "s.sqlite3")
    transactions = []
    real_run = a.run

    async def counted(job):
        transactions.append(job)
        return await real_run(job)

    a.run = counted  # type: ignore[method-assign]

    async def run() -> None:
        await a.reserve("yahoo", 8.0)
        await a.clean("yahoo", 8.0, recovery=0.02)
        assert len(transactions) == 1  # the reserve's: nothing backed off, nothing to clean
        assert await b.throttled("yahoo", 8.0, "421 4.7.0 try again later", pause=0.01) == 4.0  # another relay
        await asyncio.sleep(0.05)  # its pause and the recovery time are over
        await a.reserve("yahoo", 8.0)  # the next message sees the backed-off rate ...
        await a.clean("yahoo", 8.0, recovery=0.02)  # ... and its clean steps it up
        assert len(transactions) == 3
        assert a.views()[0].rate == 6.0

    asyncio.run(run())


def test_a_spike_of_policy_blocks_pauses_the_provider_and_alerts_once(tmp_path):
    settings = Settings(data_dir=tmp_path, shaping_block_spike=3, shaping_block_pause=0.5, shaping_hold=0)
    alerts: list[ev.Alert] = []

    async def alert(event: ev.Alert) -> None:
        alerts.append(event)

    shaper = Shaper(settings, ControlState(), SqliteShapingStore(tmp_path / "s.sqlite3"), alert)
    reply = ["550 5.7.1 blocked for policy reasons"]
    sent_at: list[float] = []

    async def send(rcpts: list[str], turn) -> dict[str, DeliveryResult]:
        await turn()
        sent_at.append(time.time())
        code, text = reply[0].split(" ", 1)
        return {r: from_reply(int(code), text) for r in rcpts}

    async def run() -> None:
        sending_for.set(("ws1", "svc1"))
        for i in range(3):
            await shaper.deliver("microsoft", [f"u{i}@outlook.test"], send)
        paused_until = shaper.store.views()[0].paused_until
        assert paused_until > sent_at[-1]
        assert [(a.kind, a.state, a.provider, a.service_id) for a in alerts] == [
            ("provider_paused", "raised", "microsoft", "svc1")]
        await shaper.deliver("microsoft", ["u3@outlook.test"], send)  # blocked again: no second alert
        assert sent_at[-1] >= paused_until and len(alerts) == 1
        reply[0] = "250 2.0.0 OK"
        await shaper.deliver("microsoft", ["late@outlook.test"], send)
        assert [a.state for a in alerts] == ["raised", "cleared"] and alerts[0].email_id == alerts[1].email_id

    asyncio.run(run())


def test_only_the_operators_owners_and_admins_may_shape_the_installation():
    """The default workspace's owners and admins; nobody of another workspace (a tenant)."""
    from services.api.access import Actor
    from services.api.manage.shaping import refusal

    assert refusal(Actor("default", "owner")) is None and refusal(Actor("default", "admin")) is None
    for actor in (Actor("default", "developer"), Actor("default", "viewer"), Actor("tenant", "owner")):
        refused = refusal(actor)
        assert refused is not None and refused.status == 403


def test_queue_counts_add_up_across_processes_and_a_dead_ones_lapse(tmp_path, monkeypatch):
    a, b = SqliteShapingStore(tmp_path / "s.sqlite3"), SqliteShapingStore(tmp_path / "s.sqlite3")

    async def run() -> None:
        await a.queued("google", 3)
        await b.queued("google", 2)
        await a.queued("google", -1)
        await a.queue_counts_written()
        await b.queue_counts_written()

    asyncio.run(run())
    assert {v.provider: v.queued for v in a.views()} == {"google": 4}
    later = time.time() + QUEUE_TTL + 1  # b's process died with its two waiting; a says its own still wait
    monkeypatch.setattr(time, "time", lambda: later)

    async def still_waiting() -> None:
        await a.queued("google", 0)
        await a.queue_counts_written()

    asyncio.run(still_waiting())
    assert {v.provider: v.queued for v in b.views()} == {"google": 2}


def test_a_process_writes_its_queue_counts_at_most_once_a_second(tmp_path):
    """The first change is written at once, the changes of the next second together: a message
    waiting for its turn costs no transaction of its own."""
    store = SqliteShapingStore(tmp_path / "s.sqlite3")
    writes = []
    real_run = store.run

    async def counted(job):
        writes.append(time.monotonic())
        return await real_run(job)

    store.run = counted  # type: ignore[method-assign]

    async def run() -> list[int]:
        seen = []
        await store.queued("google", 1)
        await asyncio.sleep(0.1)  # the first change is in the file already
        seen.append(sum(v.queued for v in store.views()))
        for _ in range(200):  # 200 messages wait and leave within the second
            await store.queued("google", 1)
            await store.queued("yahoo", 1)
            await store.queued("google", -1)
        await store.queue_counts_written()
        seen.append(sum(v.queued for v in store.views()))
        return seen

    assert asyncio.run(run()) == [1, 201]
    assert len(writes) == 2 and writes[1] - writes[0] >= 0.9


def test_a_pool_source_has_the_destinations_address_family(tmp_path):
    """A pool with IPv4 and IPv6 addresses: an IPv4 MX address is reached from an IPv4 one and
    an IPv6 address from an IPv6 one (never a source that cannot reach it); a pool without the
    family says so."""
    now = ev.utcnow()
    state = ControlState()
    state.apply(ev.ServiceSaved(workspace_id="ws1", service_id="svc1", name="app", created_at=now, ip_pool_id="p1"))
    state.apply(ev.ServiceSaved(workspace_id="ws1", service_id="svc2", name="v4", created_at=now, ip_pool_id="p2"))
    both = [ev.PoolAddress(ip="192.0.2.1", ehlo_name="a.acme.test", added_at=now, warm=True),
            ev.PoolAddress(ip="2001:db8::1", ehlo_name="b.acme.test", added_at=now, warm=True)]
    state.apply(ev.IpPoolSaved(workspace_id="ws1", pool_id="p1", name="dual", addresses=both, created_at=now))
    state.apply(ev.IpPoolSaved(workspace_id="ws1", pool_id="p2", name="v4", addresses=both[:1], created_at=now))
    shaper = Shaper(Settings(), state, SqliteShapingStore(tmp_path / "s.sqlite3"))

    async def run() -> tuple[list, list, object]:
        sending_for.set(("ws1", "svc1"))
        v4 = [(await shaper.source("gmail", 4)).ip for _ in range(3)]
        v6 = [(await shaper.source("gmail", 6)).ip for _ in range(3)]
        sending_for.set(("ws1", "svc2"))
        return v4, v6, await shaper.source("gmail", 6)

    v4, v6, missing = asyncio.run(run())
    assert v4 == ["192.0.2.1"] * 3 and v6 == ["2001:db8::1"] * 3 and missing == "unreachable"


def test_a_pause_holds_the_messages_that_already_had_a_start_time(tmp_path):
    """Fifteen messages reserved at Yahoo's 5/s (starts up to 2.8 s away); a 421 to the first
    pauses the provider for 2.5 s: the ones that waited a second or more for their start go
    after the pause, not at the old rate into it (a shorter wait is not re-checked)."""
    shaper = Shaper(Settings(), ControlState(), SqliteShapingStore(tmp_path / "s.sqlite3"))

    async def run() -> tuple[float, list[float]]:
        async def one() -> float:
            await shaper._wait_turn("yahoo", 1)
            return time.time()

        tasks = [asyncio.create_task(one()) for _ in range(15)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await shaper.store.throttled("yahoo", 5.0, "421 4.7.0 try again later", pause=2.5)
        ends = await shaper.store.paused_until("yahoo")
        return ends, sorted(await asyncio.gather(*tasks))

    ends, starts = asyncio.run(run())
    into_the_pause = sum(start < ends for start in starts)
    assert into_the_pause <= 1 + 5 * PAUSE_RECHECK + 1  # the first, the waits under a second, one of slack
    assert len(starts) - into_the_pause >= 8  # the rest after it (before: every one into the pause)


def test_a_lease_that_lapsed_is_not_renewed(tmp_path, monkeypatch):
    """A session whose transaction outlasted its lease learns it at the renewal (and closes),
    instead of renewing nothing and staying open uncounted beside the slot's new holder."""
    from services.relay.shaping import store as store_module

    monkeypatch.setattr(store_module, "LEASE_TTL", 0.2)
    store = SqliteShapingStore(tmp_path / "s.sqlite3")

    async def run() -> tuple[bool, bool, str | None]:
        kept = await store.lease("yahoo", 1)
        renewed = await store.renew(kept)
        await asyncio.sleep(0.3)
        taken = await store.lease("yahoo", 1)  # another process takes the lapsed slot
        return renewed, await store.renew(kept), taken

    renewed, lapsed, taken = asyncio.run(run())
    assert renewed and not lapsed and taken is not None


def test_a_backlog_behind_slow_connections_still_goes_out_at_the_rate(tmp_path):
    """Two connections at 10 messages/s to a server that takes 0.5 s per message, then answers
    at once: the turns are taken with a connection in hand, so the waiting backlog leaves at
    the rate when the server speeds up, not all together (a turn taken before a connection
    was spent while waiting for one)."""
    from services.relay.senders.smtp_pool import SmtpPool
    from tests.support.smtp_sink import SmtpSink

    settings = Settings(data_dir=tmp_path, mx_concurrency=2, mx_rate=10.0, shaping_hold=0)
    shaper = Shaper(settings, ControlState(), SqliteShapingStore(tmp_path / "s.sqlite3"))
    key = "other:example.com"
    sink = SmtpSink(data_delay=0.5).start()
    pool = SmtpPool("127.0.0.1", sink.port, size=2, slots=shaper.slots(key))

    async def run() -> None:
        async def one(i: int) -> None:
            await shaper.deliver(key, [f"u{i}@example.com"],
                                 lambda some, turn: pool.send("a@acme.test", some, b"Subject: x\r\n\r\nx\r\n", turn))

        tasks = [asyncio.create_task(one(i)) for i in range(30)]
        await asyncio.sleep(2.0)
        sink.data_delay = 0  # the server speeds up with a backlog waiting
        await asyncio.gather(*tasks)
        await pool.close()

    try:
        asyncio.run(run())
        with sink.lock:
            times = sorted(m.at for m in sink.received)
    finally:
        sink.stop()
    assert len(times) == 30
    most_in_a_second = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert most_in_a_second <= 10 + 2  # the rate, and a message or two of timing slack


def test_a_send_cancelled_while_it_holds_a_connection_gives_its_lease_back(tmp_path):
    """A stop cancels a send waiting for the provider's turn with its connection open: the
    session closes and its lease is back in the shared file at once, not after it lapses."""
    from services.relay.senders.smtp_pool import SmtpPool
    from tests.support.smtp_sink import SmtpSink

    settings = Settings(data_dir=tmp_path, mx_concurrency=1)
    shaper = Shaper(settings, ControlState(), SqliteShapingStore(tmp_path / "s.sqlite3"))
    key = "other:example.com"
    sink = SmtpSink().start()
    pool = SmtpPool("127.0.0.1", sink.port, size=1, slots=shaper.slots(key))

    def leases() -> int:  # live leases in the shared file, as another process would count them
        with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite3")) as db:
            return db.execute("SELECT COUNT(*) FROM leases WHERE expires>=?", (time.time(),)).fetchone()[0]

    async def run() -> tuple[int, int]:
        async def never() -> None:
            await asyncio.Event().wait()

        task = asyncio.create_task(pool.send("a@acme.test", ["u@example.com"], b"Subject: x\r\n\r\nx\r\n", never))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if held_now := leases():
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return held_now, leases()

    try:
        held, after = asyncio.run(run())
    finally:
        sink.stop()
    assert (held, after) == (1, 0)


@pytest.mark.parametrize("point, knob", [
    ("relay.shaping.renew", "services.relay.senders.smtp_pool.LEASE_RENEW"),  # the session's lease, after its message
    ("relay.shaping.clean", "services.relay.shaping.store.CALM_FOR"),  # the provider's state, after a delivery
])
def test_a_shaping_file_error_after_the_reply_keeps_the_outcome(tmp_path, monkeypatch, point, knob):
    """The shaping file fails to take a write (a full disk) once the server has accepted a
    message: the delivery still comes back as delivered (for the ledger), so the message is
    not sent again."""
    from services.relay.senders.smtp_pool import SmtpPool
    from tests.support.smtp_sink import SmtpSink

    monkeypatch.setattr(knob, -1.0)  # that write after every message, not after 20 s / 1 s
    shaper = Shaper(Settings(data_dir=tmp_path), ControlState(), SqliteShapingStore(tmp_path / "s.sqlite3"))
    key = "other:example.com"
    sink = SmtpSink().start()
    pool = SmtpPool("127.0.0.1", sink.port, size=1, slots=shaper.slots(key))

    async def run() -> list[str]:
        def send(some, turn):
            return pool.send("a@acme.test", some, b"Subject: x\r\n\r\nx\r\n", turn)

        statuses = [(await shaper.deliver(key, ["one@example.com"], send))["one@example.com"].status]
        failpoints.configure(point, 1.0)
        try:
            statuses.append((await shaper.deliver(key, ["two@example.com"], send))["two@example.com"].status)
        finally:
            failpoints.configure(point, None)
        await pool.close()
        return statuses

    try:
        assert asyncio.run(run()) == ["delivered", "delivered"]
        with sink.lock:
            assert [m.rcpt_tos for m in sink.received] == [["one@example.com"], ["two@example.com"]]
    finally:
        sink.stop()


def test_a_throttle_the_shaping_file_cannot_record_defers_instead_of_trying_again_at_once(tmp_path):
    """With a hold (``shaping_hold``), a throttled recipient normally waits for the provider's
    pause and is tried again; when the pause could not be recorded (the file fails), there is
    no pause to wait for: the recipient is deferred at once, not sent again straight away."""
    from services.relay.senders.smtp_pool import SmtpPool
    from tests.support.smtp_sink import SmtpSink

    shaper = Shaper(Settings(data_dir=tmp_path, shaping_hold=5.0), ControlState(), SqliteShapingStore(tmp_path / "s.sqlite3"))
    key = "other:example.com"
    sink = SmtpSink(rcpt_replies={"u@example.com": "421 4.7.0 Try again later"}).start()
    pool = SmtpPool("127.0.0.1", sink.port, size=1, slots=shaper.slots(key))
    tries = []

    async def run() -> DeliveryResult:
        def send(some, turn):
            tries.append(some)
            return pool.send("a@acme.test", some, b"Subject: x\r\n\r\nx\r\n", turn)

        failpoints.configure("relay.shaping.throttled", 1.0)
        try:
            return (await shaper.deliver(key, ["u@example.com"], send))["u@example.com"]
        finally:
            failpoints.configure("relay.shaping.throttled", None)
            await pool.close()

    try:
        result = asyncio.run(run())
    finally:
        sink.stop()
    assert (result.status, result.smtp_code, len(tries)) == ("deferred", 421, 1)


def test_replies_of_an_earlier_pass_stand_when_the_batch_is_lost_before_the_retry_of_the_throttled(tmp_path):
    """Held for the provider's pause, the throttled recipients of a message go again — but the
    relay's batch went to another relay meanwhile (``BatchLost`` right before the transaction):
    the replies of the first pass come back with the loss (``PartlySent``: they must reach the
    ledger, or the message goes to them again), not the throttled ones (the new owner's).
    Lost before any recipient had a final reply (at once, or all throttled at first):
    ``BatchLost`` as it came."""
    shaper = Shaper(Settings(data_dir=tmp_path, shaping_hold=60, shaping_pause=0.1), ControlState(),
                    SqliteShapingStore(tmp_path / "s.sqlite3"))
    passes: list[list[str]] = []

    async def send(rcpts: list[str], turn) -> dict[str, DeliveryResult]:
        passes.append(rcpts)
        if any(set(rcpts) <= set(earlier) for earlier in passes[:-1]):  # the throttled ones' second pass
            raise BatchLost("given to another relay")
        return {r: from_reply(421, "4.7.0 try again later") if r.startswith("t") else from_reply(250, "2.0.0 OK")
                for r in rcpts}

    async def lost_at_once(rcpts: list[str], turn) -> dict[str, DeliveryResult]:
        raise BatchLost("given to another relay")

    async def run() -> dict[str, DeliveryResult]:
        with pytest.raises(PartlySent) as partly:
            await shaper.deliver("yahoo", ["ok@yahoo.test", "throttled@yahoo.test"], send)
        for rcpts, sender in ((["x@yahoo.test"], lost_at_once), (["throttled-only@yahoo.test"], send)):
            with pytest.raises(BatchLost) as lost:
                await shaper.deliver("yahoo", rcpts, sender)
            assert not isinstance(lost.value, PartlySent)
        return partly.value.results

    answered = asyncio.run(run())
    assert passes == [["ok@yahoo.test", "throttled@yahoo.test"], ["throttled@yahoo.test"],
                      ["throttled-only@yahoo.test"], ["throttled-only@yahoo.test"]]
    assert list(answered) == ["ok@yahoo.test"] and answered["ok@yahoo.test"].status == "delivered"
