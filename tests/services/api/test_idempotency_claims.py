"""The Idempotency-Key protocol in-process: the claim rule, and two gates over one embedded
log file (as two API processes of ``postline all`` are) sending once per key."""
from __future__ import annotations

import asyncio

import pytest

from services.api.idempotency import Idempotency, email_id_for
from services.api.idempotency import claims as c
from services.api.idempotency.sqlite_claims import SqliteClaims
from services.api.refusal import Refusal
from shared.log.port import LogTimeout, LogUnavailable
from shared.log.sqlite import SqliteLog


def test_the_first_claim_holds_until_done_or_its_lease_runs_out():
    first = c.apply(None, c.claim("a", "h1", 100.0, 10))
    assert first.owner == "a"
    assert c.apply(first, c.claim("b", "h1", 105.0, 10)) is first            # lease still running
    assert c.apply(first, c.claim("b", "h2", 111.0, 10)) is first            # other body: never takes over
    assert c.apply(first, c.claim("b", "h1", 111.0, 10)).owner == "b"        # same body, lease over
    finished = c.apply(first, c.done("a", "h1", 106.0, {"id": "x"}, 100.0))
    assert finished.response == {"id": "x"}
    assert c.apply(finished, c.claim("b", "h1", 5000.0, 10)) is finished     # done is final for 24 h
    assert c.apply(finished, c.claim("b", "h2", 106.0 + c.TTL_SECONDS, 10)).owner == "b"
    assert c.apply(first, c.release("b", "h1", 101.0, 100.0)) is first       # only the owner releases
    freed = c.apply(first, c.release("a", "h1", 101.0, 100.0))
    assert freed.released and c.apply(freed, c.claim("b", "h2", 102.0, 10)).owner == "b"  # any body may claim it


def test_a_use_of_a_key_keeps_its_start_through_takeover_and_done_and_a_new_use_starts_anew():
    first = c.apply(None, c.claim("a", "h1", 100.0, 10))
    taken = c.apply(first, c.claim("b", "h1", 111.0, 10, first.since))      # the lease ran out
    finished = c.apply(taken, c.done("b", "h1", 112.0, {"id": "x"}, taken.since))
    again = c.apply(finished, c.claim("c", "h1", 112.0 + c.TTL_SECONDS, 10))  # a day later
    assert (first.since, taken.owner, taken.since, finished.since) == (100.0, "b", 100.0, 100.0)
    assert (again.owner, again.since) == ("c", 112.0 + c.TTL_SECONDS)
    # a replica reading a compacted claims topic, the first claim gone, takes its writer's start
    assert c.apply(None, c.claim("b", "h1", 111.0, 10, 100.0)).since == 100.0
    # an error answer releases the key: a claim within the day continues the use (the answer
    # may have been appended all the same: the same body is the same message, another body
    # another one, by the body hash in the id); after the day a new use begins
    freed = c.apply(taken, c.release("b", "h1", 111.5, taken.since))
    assert freed.released and freed.since == 100.0
    assert c.apply(freed, c.claim("c", "h1", 200.0, 10, freed.since)).since == 100.0
    assert c.apply(freed, c.claim("c", "h2", 200.0, 10, freed.since)).since == 100.0
    assert c.apply(freed, c.claim("c", "h1", 100.0 + c.TTL_SECONDS, 10)).since == 100.0 + c.TTL_SECONDS
    # a replica that reads only the release (its claim compacted away) keeps the same tombstone
    assert c.apply(None, c.release("b", "h1", 111.5, 100.0)) == c.apply(first, c.release("a", "h1", 111.5, 100.0))
    # a writer's start that is over is not taken: the key's new use begins at its claim
    assert c.apply(None, c.claim("c", "h1", 100.0 + c.TTL_SECONDS, 10, 100.0)).since == 100.0 + c.TTL_SECONDS
    # a change recorded before ``since`` was kept: the id from the key alone, as a replica that
    # read the old state has it
    legacy = {"kind": "claim", "owner": "a", "hash": "h1", "at": 100.0, "lease_until": 110.0}
    assert c.apply(None, legacy).since is None
    assert c.apply(None, {"kind": "done", "owner": "a", "hash": "h1", "at": 100.0, "response": {}}).since is None
    ids = [email_id_for("svc", "k", state.since, "h1") for state in (first, taken, finished, again)]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert email_id_for("svc", "k", 100.0, "h2") != ids[0]  # another body in the same use: another message
    assert email_id_for("svc", "k", None, "h1") != ids[0]  # a claim kept before ``since``: the id it had then


def test_a_use_lasts_a_day_whatever_happens_in_it_and_every_replica_agrees():
    """Takeovers and releases in any order, any bodies: one ``since`` for the day, a new one
    after it, the same on a replica that read only the records the topic still keeps."""
    def replay(records, state=None):
        for r in records:
            state = c.apply(state, r)
        return state

    a = c.claim("a", "h1", 0.0, 30)                            # appended, unconfirmed: claim kept
    b = c.claim("b", "h1", 40.0, 30, 0.0)                      # takeover, refused: released
    b_off = c.release("b", "h1", 41.0, 0.0)
    other = c.claim("c", "h2", 42.0, 30, 0.0)                  # another body, refused: released
    other_off = c.release("c", "h2", 43.0, 0.0)
    retry = c.claim("d", "h1", 44.0, 30, 0.0)                  # a's client retries
    assert replay([a, b, b_off, other, other_off, retry]).since == 0.0
    late = c.claim("e", "h1", 86000.0, 30, 0.0)                # takeovers keep the use...
    later = c.claim("f", "h1", 150000.0, 30, 0.0)              # ...for its day only
    full = replay([a, b, b_off, other, other_off, retry, late, later])
    assert full.since == replay([later]).since == 150000.0     # a replica that kept only the last record agrees
    legacy_claim = {"kind": "claim", "owner": "a", "hash": "h1", "at": 0.0, "lease_until": 30.0}
    freed = replay([legacy_claim, c.release("a", "h1", 86000.0, None)])
    assert freed is not None and not freed.live(86400.0)       # an older version's use ends a day after its claim


@pytest.fixture
async def two_processes(tmp_path):
    logs = [SqliteLog(tmp_path / "log.sqlite3"), SqliteLog(tmp_path / "log.sqlite3")]
    for lg in logs:
        await lg.start()
    yield [Idempotency(SqliteClaims(lg), lease=1.0) for lg in logs]
    for lg in logs:
        await lg.close()


def producer(calls: list, result: dict, delay: float = 0.05):
    async def produce(held: c.Claim):
        calls.append(result)
        await asyncio.sleep(delay)
        return result
    return produce


async def test_concurrent_duplicates_on_two_processes_send_once(two_processes):
    calls: list = []
    answers = await asyncio.gather(*(two_processes[i % 2].run("svc", "k", "h", producer(calls, {"id": "e1"}))
                                     for i in range(20)))
    assert len(calls) == 1 and all(a == {"id": "e1"} for a in answers)


async def test_two_bodies_at_once_one_wins_the_other_409(two_processes):
    calls: list = []
    runs = [two_processes[i % 2].run("svc", "k", f"h{i % 2}", producer(calls, {"body": i % 2})) for i in range(10)]
    answers = await asyncio.gather(*runs)
    won = [a for a in answers if isinstance(a, dict)]
    assert len(calls) == 1 and won and all(a == calls[0] for a in won)
    assert all(isinstance(a, Refusal) and (a.status, a.name) == (409, "invalid_idempotent_request")
               for a in answers if not isinstance(a, dict))
    assert len(won) == 5  # every request with the winner's body got its answer


async def test_an_error_answer_frees_the_key(two_processes):
    limited = Refusal(429, "rate limit reached", code="rate_limit_exceeded")

    async def refused(held):
        return limited

    async def broken(held):
        raise RuntimeError("a bug")

    a, b = two_processes
    assert await a.run("svc", "k", "h", refused) is limited  # the producer's refusal comes back as it is
    assert await b.run("svc", "k", "other body", producer([], {"id": "e2"}, 0)) == {"id": "e2"}
    with pytest.raises(RuntimeError):  # a raising producer frees the key too
        await a.run("svc", "k2", "h", broken)
    assert await b.run("svc", "k2", "other body", producer([], {"id": "e3"}, 0)) == {"id": "e3"}


async def test_a_bad_key_is_a_400_refusal(two_processes):
    refused = await two_processes[0].run("svc", "k\n", "h", producer([], {"id": "never"}, 0))
    assert isinstance(refused, Refusal) and (refused.status, refused.name) == (400, "invalid_idempotency_key")


async def test_a_holder_that_never_finishes_is_taken_over_after_its_lease(two_processes):
    a, b = two_processes
    stuck = asyncio.create_task(a.run("svc", "k", "h", producer([], {"id": "never"}, delay=3600)))
    await asyncio.sleep(0.2)
    calls: list = []
    assert await b.run("svc", "k", "h", producer(calls, {"id": "e3"}, 0)) == {"id": "e3"}
    assert len(calls) == 1
    stuck.cancel()


async def test_an_unconfirmed_append_keeps_the_key_until_its_lease_runs_out(two_processes):
    """The log did not confirm the append in time (it may still land): the key is not freed,
    so another body cannot become a second message under the same email id; after the lease
    the same request takes it over (a copy that lands twice is the relay's to absorb)."""
    unconfirmed = Refusal(503, "the event log did not confirm the send in time", cause=LogTimeout("no acknowledgement"))

    async def timed_out(held):
        return unconfirmed

    a, b = two_processes
    assert await a.run("svc", "k", "h", timed_out) is unconfirmed
    other = await b.run("svc", "k", "other body", producer([], {"id": "x"}, 0))
    assert isinstance(other, Refusal) and other.status == 409
    await asyncio.sleep(1.2)  # the lease (1 s) runs out
    assert await b.run("svc", "k", "h", producer([], {"id": "e4"}, 0)) == {"id": "e4"}
    # a log that refused outright (nothing written: a full disk, unreachable) frees the key at once
    down = Refusal(503, "the event log is unavailable", cause=LogUnavailable("disk full"))

    async def refused(held):
        return down

    assert await a.run("svc", "k2", "h", refused) is down
    assert await b.run("svc", "k2", "other body", producer([], {"id": "e5"}, 0)) == {"id": "e5"}


async def test_a_retry_after_an_unconfirmed_answer_is_the_same_message(two_processes):
    """The log did not confirm the append (it may have landed): the key is released, and the
    retry on another process sends under the same email id, which the relay sends once."""
    a, b = two_processes
    ids: list[str] = []

    async def unconfirmed(held: c.Claim):
        ids.append(email_id_for("svc", "k", held.since, held.body_hash))
        return Refusal(503, "the event log is unavailable", cause=LogUnavailable("no acknowledgement"))

    async def confirmed(held: c.Claim):
        ids.append(email_id_for("svc", "k", held.since, held.body_hash))
        return {"id": ids[-1]}

    assert (await a.run("svc", "k", "h", unconfirmed)).status == 503
    assert await b.run("svc", "k", "h", confirmed) == {"id": ids[0]}
    assert len(ids) == 2 and ids[0] == ids[1]


class AfterABatch(c.Claims):
    """Claims as a Kafka replica answers them: ``change`` returns the state after the whole
    polled batch, here another request's claim (another body), ours (which lost), then its release."""

    def __init__(self):
        self.state: c.Claim | None = None
        self.first = True

    async def look(self, scope, key):
        return self.state

    async def change(self, scope, key, change):
        if self.first and change["kind"] == "claim":
            self.first = False
            other = c.apply(None, c.claim("other", "other body", change["at"], 10))
            lost = c.apply(other, change)
            self.state = c.apply(lost, c.release("other", "other body", change["at"], other.since))
        else:
            self.state = c.apply(self.state, change)
        return self.state

    async def changed(self, scope, key, timeout):
        await asyncio.sleep(0)


async def test_a_key_released_while_our_claim_was_read_back_is_claimed_again():
    calls: list = []
    assert await Idempotency(AfterABatch(), lease=1.0).run("svc", "k", "h", producer(calls, {"id": "e1"}, 0)) == {"id": "e1"}
    assert calls == [{"id": "e1"}]  # not a 409 for "another body": the key was free again


async def test_a_claims_table_made_before_since_was_kept_is_brought_up_to_date(tmp_path):
    """An installation upgraded with keys in use: the old table gains ``since``; a key done
    before keeps its answer, and a key claimed before keeps the id it was sending under."""
    import sqlite3
    import time

    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    now = time.time()
    with sqlite3.connect(tmp_path / "log.sqlite3") as db:
        db.execute("CREATE TABLE idempotency_claims(scope TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, "
                   "body_hash TEXT NOT NULL, lease_until REAL NOT NULL, at REAL NOT NULL, response TEXT, "
                   "PRIMARY KEY (scope, key)) WITHOUT ROWID")
        db.execute("INSERT INTO idempotency_claims VALUES ('svc', 'done', 'old', 'h', ?, ?, '{\"id\": \"e0\"}')", (now, now))
        db.execute("INSERT INTO idempotency_claims VALUES ('svc', 'stuck', 'old', 'h', ?, ?, NULL)", (now - 1, now - 5))
    gate, held = Idempotency(SqliteClaims(lg), lease=1.0), []

    async def produce(claim: c.Claim):
        held.append(claim)
        return {"id": email_id_for("svc", "stuck", claim.since, claim.body_hash)}

    try:
        assert await gate.run("svc", "done", "h", producer([], {"id": "never"}, 0)) == {"id": "e0"}
        assert await gate.run("svc", "stuck", "h", produce) == {"id": email_id_for("svc", "stuck", None, "h")}
        assert await gate.run("svc", "new", "h", producer([], {"id": "e1"}, 0)) == {"id": "e1"}
        assert held[0].since is None
    finally:
        await lg.close()
