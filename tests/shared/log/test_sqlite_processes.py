"""The embedded log shared by several OS processes over one file (what `postline all` does)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from shared.log.sqlite import SqliteLog
from tests.support.postline import ROOT

WRITER = textwrap.dedent("""
    import asyncio, sys
    from shared.log.sqlite import SqliteLog

    async def main(path, n):
        lg = SqliteLog(path, partitions=2)
        await lg.start()
        # one record at a time and a batch: both go through the other process's group commit
        for i in range(n):
            await lg.append("t", "same-key", b"child-%d" % i)
        await lg.append_many("t", [("same-key", b"child-batch-%d" % i) for i in range(n)])
        await lg.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


async def test_two_processes_appending_get_distinct_gapless_offsets_and_wake_each_other(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=2)
    await lg.start()
    consumer = lg.consumer(["t"], "g")
    await consumer.start()
    n = 200
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], cwd=ROOT)
    try:
        mine = [await lg.append("t", "same-key", b"parent-%d" % i) for i in range(n)]
        got = []
        for _ in range(100):  # records the other process wrote reach this process's consumer
            got += await consumer.poll(max_records=1000, timeout=0.5)
            if len(got) >= 3 * n:
                break
        assert child.wait(30) == 0
    finally:
        child.kill()
    values = [r.value for r in got]
    assert len(values) == 3 * n and len(set(values)) == 3 * n
    offsets = [r.offset for r in got]
    assert offsets == list(range(3 * n))  # one partition (one key): every offset once, no gaps
    assert {r.offset: r.value for r in got if r.value.startswith(b"parent")} == {
        off: b"parent-%d" % i for i, (_, off) in enumerate(mine)}
    assert [v for v in values if v.startswith(b"child-batch")] == [b"child-batch-%d" % i for i in range(n)]
    await consumer.close()
    await lg.close()


async def test_a_consumer_idle_in_one_process_is_woken_by_an_append_in_another(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=2)
    await lg.start()
    consumer = lg.consumer(["t"], None)
    await consumer.start()
    waiting = asyncio.create_task(consumer.poll(timeout=60))
    await asyncio.sleep(0.2)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path), "1", cwd=ROOT)
    assert await child.wait() == 0
    # the poll returns once the other process's record is there, long before its 60 s timeout
    recs = await asyncio.wait_for(waiting, 20)
    assert [r.value for r in recs][:1] == [b"child-0"]
    await consumer.close()
    await lg.close()


async def test_by_key_finds_the_records_of_a_key_written_by_another_process_newest_first(tmp_path):
    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=2)
    await lg.start()
    child = subprocess.run([sys.executable, "-c", WRITER, str(path), "3"], cwd=ROOT)
    assert child.returncode == 0
    assert [r.value for r in lg.by_key("t", "same-key", limit=4)] == [
        b"child-batch-2", b"child-batch-1", b"child-batch-0", b"child-2"]
    assert lg.by_key("t", "other-key") == []
    await lg.close()


async def test_a_log_written_before_heads_existed_continues_its_offsets(tmp_path):
    import sqlite3

    path = tmp_path / "log.sqlite3"
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    await lg.append("t", "k", b"a")
    await lg.append("t", "k", b"b")
    await lg.close()
    with sqlite3.connect(path) as db:  # as an older version left it
        db.execute("DROP TABLE heads")
    lg = SqliteLog(path, partitions=1)
    await lg.start()
    assert await lg.append("t", "k", b"c") == (0, 2)
    await lg.close()


async def test_members_of_one_group_with_shares_split_the_partitions_and_commit_apart(tmp_path):
    """Several relay processes of `postline all`: member i of n consumes the partitions
    p % n == i; together they read every record once, and each resumes from its own commits."""
    lg = SqliteLog(tmp_path / "log.sqlite3", partitions=4)
    await lg.start()
    await lg.append_many("t", [(f"key-{i}", b"v%d" % i) for i in range(40)])
    got = {}
    for index in (0, 1):
        c = lg.consumer(["t"], "relay")
        c.take_share(index, 2)
        await c.start()
        got[index] = await c.poll(max_records=100, timeout=0.5)
        await c.commit(got[index])
        await c.close()
    assert {r.partition % 2 for r in got[0]} == {0} and {r.partition % 2 for r in got[1]} == {1}
    assert sorted(r.value for r in got[0] + got[1]) == sorted(b"v%d" % i for i in range(40))
    again = lg.consumer(["t"], "relay")
    again.take_share(1, 2)
    await again.start()
    assert await again.poll(max_records=100, timeout=0.2) == []  # member 1 resumes after its commits
    await again.close()
    await lg.close()
