"""Disk use of the embedded log and what retention gives back (issue 21).

1. ``postline all`` (production service, dual DKIM, lean sink) takes ``sends`` sends of a 5 KB
   HTML email from 16 clients and delivers them; the growth of ``log.sqlite3`` (WAL
   checkpointed) divided by the sends is the bytes on disk per message, API → relay → events.
2. The records those sends left (requests, events, every topic) are appended again, with
   fresh keys, until the log holds ``total`` messages' worth: the size after 100,000 messages
   without running 100,000 through SMTP, with exactly the records real sends write.
3. One retention pass with a short retention (every message older than it) runs while a
   writer keeps appending 5 KB sends at WRITER_RATE a second; the size after it (those sends are retained), the
   pass's duration and the append latency during the pass against the same appends without
   one (sends are not paused) are reported; then a second pass once those sends are past
   retention too gives the floor (the control topic and each partition's newest record).
"""
from __future__ import annotations

import asyncio
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared import events as ev
from shared.log.retention import RetentionPolicy, sweep
from shared.log.sqlite import SqliteLog
from tests.bench.clients import post_sends
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

CLIENTS = 16
WRITER_RATE = 200  # appends a second while the pass runs
PARAGRAPH = ("<p style=\"margin:0 0 12px;font-family:Helvetica,Arial,sans-serif\">Hello {n}, your order "
             "<b>#{n}-A</b> has shipped. Track it at <a href=\"https://shop.example.com/t/{n}\">"
             "shop.example.com/t/{n}</a>. Thanks for shopping with Acme.</p>\n")
HTML = "<html><body>" + "".join(PARAGRAPH.format(n=1000 + i) for i in range(22)) + "</body></html>"  # ~5 KB


def file_bytes(path: Path) -> int:
    """Size of the log after a TRUNCATE checkpoint: the WAL's pages are in the main file."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def topic_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT topic, COUNT(*) FROM records GROUP BY topic").fetchall())


def send_through_postline(data: Path, sends: int) -> dict:
    dns = DnsServer().start()
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "tests.bench.sink", str(port)], stdout=subprocess.PIPE)
    sink.stdout.readline()
    proc = PostlineProcess(data, env={"POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "smarthost",
                                      "POSTLINE_SMARTHOST": f"127.0.0.1:{port}",
                                      "POSTLINE_RATE_PER_MINUTE": "1000000",
                                      "POSTLINE_RATE_PER_DAY": "100000000"}).start()
    path = data / "log.sqlite3"
    try:
        _, key = production_service(Api(proc.url), dns)
        before, counts_before = file_bytes(path), topic_counts(path)
        body = {"from": "Acme <orders@acme.test>", "to": "bench@example.com", "subject": "Your order shipped",
                "html": HTML}
        codes: dict[int, int] = {}

        post_sends(proc.url, key, body, sends, CLIENTS, codes)
        settled, last = 0, None
        while settled < 3:  # delivered: the events topic stopped growing for 3 s
            time.sleep(1)
            now = topic_counts(path).get(ev.Topic.EVENTS, 0)
            settled = settled + 1 if now == last else 0
            last = now
    finally:
        proc.stop()
        sink.terminate()
        sink.wait()
        dns.stop()
    sent = sum(n for c, n in codes.items() if c == 200)
    after, counts = file_bytes(path), topic_counts(path)
    per_topic = {t: round((n - counts_before.get(t, 0)) / sent, 2) for t, n in counts.items()
                 if n != counts_before.get(t, 0)}
    return {"sends": sent, "status_codes": codes, "html_bytes": len(HTML),
            "bytes_on_disk_per_message": round((after - before) / sent),
            "records_per_message": per_topic, "log_bytes": after}


async def grow_and_retain(path: Path, total: int, real: int) -> dict:
    """Append the real sends' records again until ``total`` messages, then run one pass."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT topic, key, value FROM records WHERE topic IN (?, ?) ORDER BY ts",
                            (str(ev.Topic.REQUESTS), str(ev.Topic.EVENTS))).fetchall()
    lg = SqliteLog(path)
    await lg.start()
    try:
        t0 = time.perf_counter()
        for copy in range(1, total // real):
            for topic in (ev.Topic.REQUESTS, ev.Topic.EVENTS):
                items = [(f"{key}~{copy}", value) for t, key, value in rows if t == topic]
                for i in range(0, len(items), 2000):
                    await lg.append_many(topic, items[i:i + 2000])
        grow_s = time.perf_counter() - t0
        at_total = file_bytes(path)
        # a short retention: every record so far is older than it when the pass runs
        await asyncio.sleep(2)
        body = rows[0][2]
        baseline = []
        for _ in range(300):  # the same appends without a pass running, to compare with
            t = time.perf_counter()
            await lg.append(ev.Topic.REQUESTS, None, body)
            baseline.append((time.perf_counter() - t) * 1000)
        policy = RetentionPolicy(requests=1, events=1, dead_letter=1)
        started = time.perf_counter()
        passing = asyncio.create_task(asyncio.to_thread(sweep, path, policy))
        latencies = []
        while not passing.done():  # sends keep coming, ~WRITER_RATE a second
            t = time.perf_counter()
            await lg.append(ev.Topic.REQUESTS, None, body)
            latencies.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(max(0.0, 1 / WRITER_RATE - (time.perf_counter() - t)))
        report = await passing
        pass_s = time.perf_counter() - started
    finally:
        await lg.close()
    after = file_bytes(path)
    # and once the sends made during the pass are past retention too: what is left is the
    # control topic and each partition's newest record
    floor = await asyncio.to_thread(sweep, path, policy, time.time() + 10)
    at_floor = file_bytes(path)
    return {"messages": total, "log_bytes_after_messages": at_total,
            "log_mb_after_messages": round(at_total / 1e6, 1), "append_s": round(grow_s, 1),
            "retention_pass_s": round(pass_s, 1), "records_expired": sum(report.expired.values()),
            "pages_released": report.pages_released,
            "log_bytes_after_retention": after, "log_mb_after_retention": round(after / 1e6, 2),
            "sends_during_pass": len(latencies), "send_rate_during_pass": WRITER_RATE,
            "log_bytes_when_those_expired_too": at_floor, "records_expired_then": sum(floor.expired.values()),
            "append_latency_ms_without_pass": quantiles(baseline),
            "append_latency_ms_during_pass": quantiles(latencies)}


def quantiles(ms: list[float]) -> dict | None:
    if not ms:
        return None
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 1), "p99": round(ms[int(len(ms) * 0.99)], 1), "max": round(ms[-1], 1)}


def run(sends: int = 2000, total: int = 100_000) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="postline-bench-retention-"))  # ~1 GB at 100,000: removed at the end
    try:
        real = send_through_postline(tmp / "data", sends)
        grown = asyncio.run(grow_and_retain(tmp / "data" / "log.sqlite3", total, real["sends"]))
        return {**real, **grown}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
