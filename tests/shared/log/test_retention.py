"""Retention and compaction of the embedded log (shared/log/retention.py), on real SQLite files.

Passes are run with ``now`` moved forward instead of waiting: records keep their real
timestamps and the pass judges them against a later clock."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import datetime, timezone

import pytest

from shared import events as ev
from shared.control.plane import ControlPlane
from shared.control.state import entity_key
from shared.log import retention
from shared.log.kafka import KafkaLog
from shared.log.retention import RetentionPolicy, run_retention, sweep
from shared.log.sqlite import SqliteLog
from shared.settings import Settings, load_settings

DAY = 86400
POLICY = RetentionPolicy(requests=7 * DAY, events=30 * DAY, dead_letter=30 * DAY)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def count(path, topic: str | None = None) -> int:
    with sqlite3.connect(path) as conn:
        if topic is None:
            return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        return conn.execute("SELECT COUNT(*) FROM records WHERE topic=?", (topic,)).fetchone()[0]


@pytest.fixture
def log(sqlite_log):
    return sqlite_log


async def test_each_topic_keeps_its_own_retention(log):
    for topic in (ev.Topic.REQUESTS, "email.retry.3", ev.Topic.EVENTS, ev.Topic.DEAD_LETTER, "other.topic"):
        await log.append_many(topic, [("k", b"x" * 100)] * 10)  # one key: one partition
    report = await asyncio.to_thread(sweep, log.path, POLICY, time.time() + 8 * DAY)
    # requests and retries are past their 7 days; events and dead letters within their 30
    assert report.expired == {ev.Topic.REQUESTS: 9, "email.retry.3": 9}
    assert count(log.path, ev.Topic.REQUESTS) == 1  # the newest record of a partition stays
    assert count(log.path, ev.Topic.EVENTS) == 10
    report = await asyncio.to_thread(sweep, log.path, POLICY, time.time() + 31 * DAY)
    assert report.expired == {ev.Topic.EVENTS: 9, ev.Topic.DEAD_LETTER: 9}
    assert count(log.path, "other.topic") == 10  # topics retention does not know are kept


async def test_only_records_older_than_retention_go(log):
    await log.append_many(ev.Topic.EVENTS, [("k", b"old")] * 5)
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    await log.append_many(ev.Topic.EVENTS, [("k", b"new")] * 5)
    await asyncio.to_thread(sweep, log.path, POLICY, middle + 30 * DAY)
    consumer = log.consumer([ev.Topic.EVENTS], None)
    await consumer.start()
    assert [r.value for r in await consumer.poll(timeout=0.5)] == [b"new"] * 5


async def test_offsets_go_on_after_a_restart_when_everything_expired(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    await lg.append_many(ev.Topic.EVENTS, [("k", b"x")] * 10)
    await lg.close()
    await asyncio.to_thread(sweep, path, POLICY, time.time() + 31 * DAY)
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    assert await lg.append(ev.Topic.EVENTS, "k", b"after") == (0, 10)  # not offset 0 again
    await lg.close()


async def test_consumer_below_the_earliest_offset_continues_with_the_next_record(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    await lg.append_many(ev.Topic.EVENTS, [("k", f"{i}".encode()) for i in range(10)])
    group = lg.consumer([ev.Topic.EVENTS], "analytics")
    await group.start()
    first = await group.poll(max_records=3, timeout=0.5)
    await group.commit(first)  # committed position 3
    live = lg.consumer([ev.Topic.EVENTS], None)
    await live.start()
    assert len(await live.poll(max_records=2, timeout=0.5)) == 2  # live position 2
    await asyncio.to_thread(sweep, path, POLICY, time.time() + 31 * DAY)  # offsets 0..8 gone
    await lg.append(ev.Topic.EVENTS, "k", b"10")

    assert [r.value for r in await live.poll(timeout=0.5)] == [b"9", b"10"]
    await group.close()
    restarted = lg.consumer([ev.Topic.EVENTS], "analytics")  # from its committed offset 3
    await restarted.start()
    assert [(r.offset, r.value) for r in await restarted.poll(timeout=0.5)] == [(9, b"9"), (10, b"10")]
    await lg.close()


# ------------------------------------------------------------ compaction of the control topic
def workspace(name: str, token: str, deleted: bool = False, **kw) -> ev.WorkspaceSaved:
    return ev.WorkspaceSaved(workspace_id="w1", name=name, token_hash=token, deleted=deleted, **kw)


def service(sid: str, name: str, deleted: bool = False, **kw) -> ev.ServiceSaved:
    return ev.ServiceSaved(workspace_id="w1", service_id=sid, name=name, created_at=T0, deleted=deleted, **kw)


def api_key(kid: str, key_hash: str, deleted: bool = False) -> ev.ApiKeySaved:
    return ev.ApiKeySaved(workspace_id="w1", service_id="s1", key_id=kid, name=kid, key_hash=key_hash,
                          prefix="pl_", created_at=T0, deleted=deleted)


def suppression(email: str, deleted: bool = False) -> ev.SuppressionSaved:
    return ev.SuppressionSaved(workspace_id="w1", service_id="s1", email=email, reason="manual",
                               created_at=T0, deleted=deleted)


def snapshot(plane: ControlPlane) -> dict:
    """Everything a replay decides, as the lookups the services use see it."""
    s = plane.state
    return {"workspaces": s.workspaces, "services": s.services, "api_keys": s.api_keys,
            "domains": s.domains, "sandbox": s.sandbox, "suppressions": s.suppressions,
            "webhooks": s.webhooks, "by_token": dict(s._by_token), "by_key_hash": dict(s._by_key_hash)}


async def replay(path) -> dict:
    lg = SqliteLog(path, partitions=4)
    await lg.start()
    plane = ControlPlane(lg)
    await plane.start()
    snap = snapshot(plane)
    await plane.close()
    await lg.close()
    return snap


async def test_compacted_control_topic_replays_to_the_same_state(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=4)
    await lg.start()
    plane = ControlPlane(lg)
    await plane.start()
    history = [workspace("acme", "t1"), workspace("acme", "t2"), workspace("Acme Inc", "t3"),  # token rotations
               service("s1", "app"), service("s1", "app", mode="production"),
               service("s2", "old"), service("s2", "old", deleted=True),  # a deletion stays deleted
               api_key("k1", "h1"), api_key("k1", "h1", deleted=True), api_key("k2", "h2"),
               suppression("a@x.test"), suppression("a@x.test", deleted=True), suppression("a@x.test")]
    for event in history:
        await plane.save(event)
    # a change, a later change, then a copy of the first appended again (a producer retry):
    # replay ignores the copy, so a compaction keeping "the last record of the key" would be wrong
    first, second = service("s3", "v1"), service("s3", "v2")
    for event in (first, second, first):
        await lg.append(ev.Topic.CONTROL, entity_key(event), ev.encode(event))
    for event in [service(f"s{i}", "filler") for i in range(10, 30)]:  # the copy is no partition's newest
        await plane.save(event)
    await plane.close()
    await lg.close()
    before, records = await replay(path), count(path, ev.Topic.CONTROL)
    assert before["services"]["s3"].name == "v2"

    report = await asyncio.to_thread(sweep, path, POLICY)

    assert report.compacted >= 8 and count(path, ev.Topic.CONTROL) == records - report.compacted
    assert await replay(path) == before
    with sqlite3.connect(path) as conn:  # at most one record per entity is left
        keys = [k for (k,) in conn.execute("SELECT key FROM records WHERE topic=?", (str(ev.Topic.CONTROL),))]
    assert len(keys) == len(set(keys))


async def test_a_copy_that_is_its_partitions_newest_record_keeps_its_key_until_a_later_pass(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    first, second = service("s3", "v1"), service("s3", "v2")
    for event in (first, second, first):
        await lg.append(ev.Topic.CONTROL, entity_key(event), ev.encode(event))
    await lg.close()
    await asyncio.to_thread(sweep, path, POLICY)
    assert (await replay(path))["services"]["s3"].name == "v2"
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    await lg.append(ev.Topic.CONTROL, "service:s9", ev.encode(service("s9", "other")))
    await lg.close()
    await asyncio.to_thread(sweep, path, POLICY)
    assert (await replay(path))["services"]["s3"].name == "v2"
    assert count(path, ev.Topic.CONTROL) == 2


def merged_change(base: ev.ServiceSaved, based_on: int, **fields) -> ev.ServiceSaved:
    """A change decided on an old view (its record's other fields are stale), as ControlPlane.change writes it."""
    return base.model_copy(update={**fields, "id": ev.new_id(), "changed": sorted(fields), "based_on": based_on,
                                   "versions": {"*": based_on}})


async def test_a_merged_change_keeps_the_records_it_merged_onto_until_a_whole_state_follows(tmp_path):
    """create, mode → production, then rate from the creation's view: the latest record says
    sandbox, so compaction must keep the production change; once an anchor (the whole state)
    follows, the earlier records go."""
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    created = service("s1", "app")
    for event in (created, merged_change(created, 0, mode="production"), merged_change(created, 0, rate_per_minute=9)):
        await lg.append(ev.Topic.CONTROL, "service:s1", ev.encode(event))
    await lg.close()
    await asyncio.to_thread(sweep, path, POLICY)
    svc = (await replay(path))["services"]["s1"]
    assert (svc.mode, svc.rate_per_minute) == ("production", 9)
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    plane = ControlPlane(lg)
    await plane.start()
    await plane._anchor("service:s1")
    await plane.close()
    await lg.append(ev.Topic.CONTROL, "service:s9", ev.encode(service("s9", "other")))  # the anchor is not the newest
    await lg.close()
    await asyncio.to_thread(sweep, path, POLICY)
    svc = (await replay(path))["services"]["s1"]
    assert (svc.mode, svc.rate_per_minute) == ("production", 9)
    assert count(path, ev.Topic.CONTROL) == 2


# ------------------------------------------------------------ space back to the file system
def on_disk(path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.name.endswith(("3", "-wal")))


async def test_space_is_given_back_to_the_file_system(log):
    body = bytes(range(256)) * 20  # 5 KB that does not compress away
    for i in range(4):
        await log.append_many(ev.Topic.EVENTS, [(f"e{j}", body) for j in range(500)])
    full = on_disk(log.path)
    assert full > 10_000_000
    report = await asyncio.to_thread(sweep, log.path, POLICY, time.time() + 31 * DAY)
    assert report.pages_released > 2000
    assert on_disk(log.path) < full / 10
    assert (log.path.parent / "log.sqlite3-wal").stat().st_size == 0  # checkpointed and truncated


async def test_a_file_made_without_auto_vacuum_is_converted_once(tmp_path):
    path = tmp_path / "log.sqlite3"
    with sqlite3.connect(path) as conn:  # as releases before this one created it
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE records(topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL, "
                     "key TEXT, value BLOB NOT NULL, headers TEXT, ts INTEGER NOT NULL, "
                     "PRIMARY KEY (topic, part, off)) WITHOUT ROWID")
        conn.executemany("INSERT INTO records VALUES ('email.events', 0, ?, 'k', ?, NULL, 0)",
                         [(i, b"x" * 5000) for i in range(1000)])
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    first = await asyncio.to_thread(sweep, path, POLICY)
    assert first.converted and first.expired == {ev.Topic.EVENTS: 999} and first.pages_released > 1000
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert not (await asyncio.to_thread(sweep, path, POLICY)).converted


async def test_sends_go_on_while_a_pass_runs(log):
    await log.append_many(ev.Topic.EVENTS, [(f"e{j}", b"x" * 5000) for j in range(4000)])
    events_only = RetentionPolicy(requests=365 * DAY, events=30 * DAY, dead_letter=30 * DAY)
    passing = asyncio.create_task(asyncio.to_thread(sweep, log.path, events_only, time.time() + 31 * DAY))
    sent = []
    while not passing.done():
        sent.append(await log.append(ev.Topic.REQUESTS, None, b"during"))
    assert (await passing).expired == {ev.Topic.EVENTS: 3996}
    consumer = log.consumer([ev.Topic.REQUESTS], None)
    await consumer.start()
    got = []
    while len(got) < len(sent) and (batch := await consumer.poll(max_records=5000, timeout=0.5)):
        got += batch
    assert sorted((r.partition, r.offset) for r in got) == sorted(sent)


async def test_a_cancelled_pass_stops_after_the_step_in_progress(log):
    """Shutdown must not wait for a long pass: with ``cancel`` set, a pass stops after its
    current step (one BATCH of deletes) and what it did stays done."""
    await log.append_many(ev.Topic.EVENTS, [("k", b"x")] * (3 * retention.BATCH))
    cancel = threading.Event()
    real = retention._breathe

    def cancelling(conn):
        cancel.set()  # the process is asked to stop during the first pause
        real(conn)

    retention._breathe = cancelling
    try:
        report = await asyncio.to_thread(sweep, log.path, POLICY, time.time() + 31 * DAY, cancel)
    finally:
        retention._breathe = real
    assert report.expired == {ev.Topic.EVENTS: retention.BATCH}
    assert count(log.path, ev.Topic.EVENTS) == 2 * retention.BATCH


# ------------------------------------------------------------ the task a role runs
async def test_one_process_of_a_data_dir_runs_retention_and_another_takes_over(log, monkeypatch):
    runs: list[float] = []
    real = retention.sweep

    def recording(path, policy, *rest):
        runs.append(policy.dead_letter)  # which runner made the pass
        return real(path, policy, *rest)

    async def passes(n: int) -> None:
        while len(runs) < n:
            await asyncio.sleep(0.05)

    monkeypatch.setattr(retention, "sweep", recording)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(run_retention(log, Settings(log_retention_interval=0.05, log_retention_dead_letter=1), stop_a))
    b = asyncio.create_task(run_retention(log, Settings(log_retention_interval=0.05, log_retention_dead_letter=2), stop_b))
    await asyncio.wait_for(passes(5), 60)
    assert set(runs) == {1}
    stop_a.set()
    await a
    runs.clear()
    await asyncio.wait_for(passes(2), 60)
    assert set(runs) == {2}
    stop_b.set()
    await b


async def test_with_kafka_the_task_only_waits_for_stop():
    stop = asyncio.Event()
    kafka = KafkaLog(Settings(kafka_bootstrap="127.0.0.1:9"))  # never started: it has no local file either way
    task = asyncio.create_task(run_retention(kafka, Settings(), stop))
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await task


def test_requests_retention_shorter_than_the_queue_lifetime_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("POSTLINE_QUEUE_LIFETIME", "7200")
    monkeypatch.setenv("POSTLINE_LOG_RETENTION_REQUESTS", "3600")
    with pytest.raises(SystemExit):
        load_settings()
    assert "POSTLINE_LOG_RETENTION_REQUESTS" in capsys.readouterr().err


# ------------------------------------------------------------ in a real `postline all`
def test_postline_all_expires_sends_and_keeps_working_after_a_restart(tmp_path):
    """The relay role runs retention: with a 1 s retention the delivered sends leave the log,
    sends after it still flow, and a restart replays the compacted control topic (the key works)."""
    from tests.support.postline import Api, PostlineProcess, inbox_reader

    env = {"POSTLINE_QUEUE_LIFETIME": "1", "POSTLINE_LOG_RETENTION_REQUESTS": "1",
           "POSTLINE_LOG_RETENTION_EVENTS": "1", "POSTLINE_LOG_RETENTION_INTERVAL": "0.3"}
    path = tmp_path / "data" / "log.sqlite3"
    body = {"from": "hello@acme.test", "to": "ann@example.com", "subject": "hi", "html": "<p>hi</p>"}
    proc = PostlineProcess(tmp_path / "data", env=env).start()
    try:
        api = Api(proc.url)
        sid = api.create_service()
        key = api.create_key(sid)
        api.verify_sandbox(sid, "ann@example.com", inbox_reader(api))
        ids = [api.send(key, body).json()["id"] for _ in range(12)]
        api.wait_status(key, ids[-1], "ann@example.com", "delivered")
        deadline = time.monotonic() + 30
        while count(path, ev.Topic.REQUESTS) > 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count(path, ev.Topic.REQUESTS) <= 4  # at most each partition's newest record
        assert count(path, ev.Topic.EVENTS) <= 4 + 4 * 3  # the last few events may be newer than 1 s
        proc.stop()
        proc = PostlineProcess(tmp_path / "data", env=env).start()
        api = Api(proc.url)
        r = api.send(key, body)
        assert r.status_code == 200, r.text
        api.wait_status(key, r.json()["id"], "ann@example.com", "delivered")
    finally:
        proc.stop()
