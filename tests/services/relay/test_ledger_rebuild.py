"""The delivery ledger rebuilt from the log when a relay is handed a request partition
(issue 17): a relay with an empty disk learns every final outcome of the requests the
previous owner had not committed, and emits those outcomes again (same id, same time)
instead of sending again; it reads no further back than the oldest uncommitted request;
and with partition counts that differ it reads every events partition.

Real parts: the embedded SQLite log (a consumer group, its committed offsets) and the
ledger files; the Kafka adapter's side of the hook is covered by
tests/shared/log/test_scan_and_assignment.py and the failover test in tests/deploy/."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from services.relay.handler import already_final
from services.relay.ledger import Ledger
from services.relay.ledger_rebuild import LedgerRebuild
from shared import events as ev
from shared.log.sqlite import SqliteLog, partition_for
from shared.settings import Settings

REQ = str(ev.Topic.REQUESTS)
EVT = str(ev.Topic.EVENTS)


def request(email_id: str, rcpts: list[str]) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=email_id, mode="production", to=rcpts,
                            recipients=rcpts, subject="hi", **{"from": "a@acme.test"})


def outcomes(email_id: str) -> list[ev.Event]:
    """a@ delivered, b@ bounced, c@ failed, d@ deferred (not final: may be sent again)."""
    common = {"workspace_id": "w", "service_id": "s", "email_id": email_id}
    return [
        ev.Delivered(id=ev.derived_id(email_id, "a@x.test", "delivered"), recipient="a@x.test", smtp_code=250,
                     smtp_reply="2.0.0 queued as A1", mx_host="mx.x.test", **common),
        ev.Bounced(id=ev.derived_id(email_id, "b@x.test", "bounced"), recipient="b@x.test", smtp_code=550,
                   smtp_reply="5.1.1 no such user", bounce_type="hard", bounce_class="unknown-user", **common),
        ev.Failed(id=ev.derived_id(email_id, "c@x.test", "failed"), recipient="c@x.test", smtp_code=451,
                  smtp_reply="4.3.0 later", reason="queue lifetime exceeded", **common),
        ev.Deferred(id=ev.derived_id(email_id, "d@x.test", "deferred", 1), recipient="d@x.test", attempt=1,
                    smtp_code=451, smtp_reply="4.3.0 later", **common),
    ]


async def handled_by_a_relay_that_died(lg: SqliteLog, email_ids: list[str], committed: int) -> dict:
    """Requests handled (outcomes on the log), the first ``committed`` of them committed by
    the group, as a relay leaves them when killed; returns the outcome events by email id."""
    rcpts = ["a@x.test", "b@x.test", "c@x.test", "d@x.test"]
    positions = [await lg.append(REQ, e, ev.encode(request(e, rcpts))) for e in email_ids]
    out = {}
    for e in email_ids:
        out[e] = outcomes(e)
        await lg.append_many(EVT, [(e, ev.encode(x)) for x in out[e]])
    done = [(("relay", REQ, p, off + 1)) for p, off in positions[:committed]]
    if done:
        await lg._commit_offsets(done)
    return out


async def assign(lg: SqliteLog, ledger: Ledger, settings: Settings | None = None) -> LedgerRebuild:
    rebuild = LedgerRebuild(lg, ledger, settings or Settings())
    consumer = lg.consumer([REQ], "relay")
    consumer.on_assigned = rebuild.on_assigned
    await consumer.start()
    await consumer.close()
    return rebuild


async def test_a_new_owner_emits_finished_outcomes_again_instead_of_sending(tmp_path):
    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    ids = ["m1", "m2", "m3"]
    events = await handled_by_a_relay_that_died(lg, ids, committed=0)
    ledger = Ledger(tmp_path / "other-relay" / "ledger")  # the new owner's own, empty disk
    try:
        await assign(lg, ledger)
        for e in ids:
            req = request(e, ["a@x.test", "b@x.test", "c@x.test", "d@x.test"])
            assert set(await ledger.done(e, req.recipients)) == {"a@x.test", "b@x.test", "c@x.test"}
            again = {x.id: x for x in await already_final(SimpleNamespace(ledger=ledger, settings=Settings()), req)}
            before = {x.id: x for x in events[e] if x.type != "deferred"}
            assert set(again) == set(before)
            for i, x in before.items():  # the same event: same id, time, type and SMTP reply
                assert (again[i].type, again[i].time, again[i].smtp_code, again[i].smtp_reply) == \
                       (x.type, x.time, x.smtp_code, x.smtp_reply)
        assert (await ledger.done("m1", ["a@x.test"]))["a@x.test"][1].mx_host == "mx.x.test"
    finally:
        ledger.close()
        await lg.close()
    again = Ledger(tmp_path / "other-relay" / "ledger")  # the rebuilt outcomes are cached on its disk
    try:
        assert set(await again.done("m2", ["a@x.test", "b@x.test"])) == {"a@x.test", "b@x.test"}
    finally:
        again.close()


async def test_reads_back_only_to_the_oldest_uncommitted_request(tmp_path):
    lg = SqliteLog(tmp_path / "log.sqlite3", partitions=1)  # one partition: commits order the requests
    await lg.start()
    await handled_by_a_relay_that_died(lg, ["old1", "old2"], committed=2)
    await asyncio.sleep(0.05)
    await handled_by_a_relay_that_died(lg, ["new1"], committed=0)
    ledger = Ledger(tmp_path / "relay2" / "ledger")
    try:
        await assign(lg, ledger, Settings(ledger_clock_margin=0))
        assert await ledger.done("old1", ["a@x.test"]) == {}  # committed: never redelivered, not read
        assert set(await ledger.done("new1", ["a@x.test", "b@x.test"])) == {"a@x.test", "b@x.test"}
    finally:
        ledger.close()
        await lg.close()


async def test_nothing_uncommitted_reads_nothing(tmp_path):
    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    await handled_by_a_relay_that_died(lg, ["m1", "m2"], committed=2)
    ledger = Ledger(tmp_path / "relay2" / "ledger")
    try:
        rebuild = LedgerRebuild(lg, ledger, Settings())
        assert await rebuild.rebuild({p: off for (_, p), off in
                                      (await _resume_offsets(lg)).items()}) == 0
    finally:
        ledger.close()
        await lg.close()


async def _resume_offsets(lg: SqliteLog) -> dict:
    starts = {}

    async def hook(s):
        starts.update(s)

    c = lg.consumer([REQ], "relay")
    c.on_assigned = hook
    await c.start()
    await c.close()
    return starts


class MismatchedLog(SqliteLog):
    """An events topic made with another partition count than the requests topic."""

    async def partition_count(self, topic):
        return self.partitions if topic == EVT else self.partitions * 2


async def test_different_partition_counts_read_every_events_partition(tmp_path):
    lg = MismatchedLog(tmp_path / "log.sqlite3")
    await lg.start()
    part, _ = await lg.append(REQ, "m1", ev.encode(request("m1", ["a@x.test"])))
    # with other counts the outcome's key lands on another partition number than the request's
    other_key = next(f"k{i}" for i in range(100) if partition_for(f"k{i}", lg.partitions, 0) != part)
    await lg.append(EVT, other_key, ev.encode(outcomes("m1")[0]))
    ledger = Ledger(tmp_path / "relay2" / "ledger")
    try:
        await assign(lg, ledger)
        assert set(await ledger.done("m1", ["a@x.test"])) == {"a@x.test"}
    finally:
        ledger.close()
        await lg.close()


async def test_a_partition_kept_across_a_rebalance_is_not_read_again_unless_the_group_went_on_without_us(tmp_path):
    """A partition this relay held before a rebalance and holds again after it: its own ledger
    is current, nothing to read. But after an expulsion (``assignment_continues`` False: the
    group's generation skipped) another relay owned it meanwhile and delivered what this
    ledger does not know: it is read again."""
    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    continues = {"now": True}
    ledger = Ledger(tmp_path / "relay" / "ledger")
    rebuild = LedgerRebuild(lg, ledger, Settings(), continues=lambda: continues["now"])
    try:
        await rebuild.on_assigned(await _resume_offsets(lg))  # held from the start, nothing on the log yet
        await handled_by_a_relay_that_died(lg, ["m1"], committed=0)  # the partitions' owner meanwhile
        await rebuild.on_assigned(await _resume_offsets(lg))  # kept: not read again
        assert await ledger.done("m1", ["a@x.test"]) == {}
        continues["now"] = False
        await rebuild.on_assigned(await _resume_offsets(lg))  # back after an expulsion: read again
        assert set(await ledger.done("m1", ["a@x.test", "b@x.test"])) == {"a@x.test", "b@x.test"}
    finally:
        ledger.close()
        await lg.close()
