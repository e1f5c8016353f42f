"""Deliverability insights over 10,000,000 events in chDB: each ``stats?group_by=`` query,
``stats/latency`` and the alert rates, p50/p99 of repeated runs (docs/analytics.md).

The events go in as the loader puts them: rows of ``postline.events`` and, once per event id,
of ``postline.event_ids``, whose materialized views feed the rollups the queries read. Both
are made by ``INSERT … SELECT FROM numbers()`` (seconds, not the minutes a Python loader
would take): one service over 30 days, 8 providers, 1,000 recipient domains, 8 source IPs."""
from __future__ import annotations

import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

from shared.store import insights
from shared.store.chdb_store import ChdbStore

EVENTS = 10_000_000
RUNS = 20
SVC = "svc-bench"

# one synthetic event per number: its columns as SQL expressions of `number`
_COLUMNS = """
    toString(cityHash64(number)) AS event_id,
    ['sent','delivered','delivered','delivered','bounced','opened','clicked','deferred','dropped','complained'][number % 10 + 1] AS type,
    now64(3) - toIntervalSecond(number % (30 * 86400)) AS time,
    'w' AS workspace_id, '{svc}' AS service_id, toString(intDiv(number, 3)) AS email_id,
    concat('u', toString(number % 100000), '@d', toString(number % 1000), '.example') AS recipient,
    if(number % 4 = 0, ['welcome'], if(number % 4 = 1, ['receipt'], [])) AS tags,
    if(type = 'bounced', 550, 250) AS smtp_code, '' AS reason,
    if(number % 3 = 0, concat('tpl-', toString(number % 20)), '') AS template_id,
    if(type IN ('delivered','deferred','bounced','complained'),
       ['google','microsoft','yahoo','apple','other:d1.example','other:d2.example','',''][number % 8 + 1], '') AS provider,
    concat('d', toString(number % 1000), '.example') AS recipient_domain,
    if(type = 'bounced', ['bad-mailbox','policy-related','spam-related','quota-issues','unknown-domain',''][number % 6 + 1], '') AS bounce_class,
    if(type IN ('delivered','deferred','bounced','complained'), concat('192.0.2.', toString(number % 8 + 1)), '') AS source_ip,
    if(type = 'delivered', ['none','pkix','mta-sts','dane','plaintext'][number % 5 + 1], '') AS tls,
    if(type = 'bounced', concat('5.1.1 <', recipient, '>: user unknown (', toString(number % 7), ')'), '') AS smtp_reply,
    if(type = 'delivered', toInt64(200 + (cityHash64(number) % 5000)), -1) AS latency_ms"""


async def _load(store: ChdbStore, events: int) -> float:
    t = time.perf_counter()
    cols = _COLUMNS.format(svc=SVC)
    await store.execute(
        f"INSERT INTO postline.events (event_id, type, time, workspace_id, service_id, email_id, recipient, tags, "
        f"smtp_code, reason, template_id, provider, recipient_domain, bounce_class, source_ip, tls, smtp_reply, latency_ms, "
        f"payload) SELECT event_id, type, time, workspace_id, service_id, email_id, recipient, tags, smtp_code, reason, "
        f"template_id, provider, recipient_domain, bounce_class, source_ip, tls, smtp_reply, latency_ms, "
        f"if(type = 'bounced', concat('{{\"smtp_reply\": \"', smtp_reply, '\"}}'), '{{}}') "
        f"FROM (SELECT number, {cols} FROM numbers({events}))")
    await store.execute(
        "INSERT INTO postline.event_ids (service_id, event_id, time, type, tags, template_id, provider, recipient_domain, "
        "bounce_class, source_ip, tls, smtp_code, smtp_reply, latency_ms) "
        f"SELECT service_id, event_id, time, type, tags, template_id, provider, recipient_domain, bounce_class, "
        f"source_ip, tls, smtp_code, smtp_reply, latency_ms FROM (SELECT number, {cols} FROM numbers({events}))")
    return time.perf_counter() - t


async def _timed(call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await call()  # warm
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(times[-1], 1)}  # p99 of 20 runs: the max


async def run(events: int = EVENTS) -> dict[str, Any]:
    store = ChdbStore(Path(tempfile.mkdtemp(prefix="postline-bench-insights-")))
    await store.migrate()
    out: dict[str, Any] = {"events": events, "load_s": round(await _load(store, events), 1)}
    rollup = await store.query("SELECT count() AS n FROM postline.event_rollup")
    out["rollup_rows_after_load"] = int(rollup[0]["n"])
    timings: dict[str, dict[str, float]] = {}
    for group_by in insights.GROUP_BY:
        for period, bucket in (("30d", "day"), ("24h", "hour")):
            async def grouped(g: str = group_by, p: str = period, b: str = bucket) -> Any:
                return await insights.grouped_stats(store, SVC, g, p, b, None, 10)
            timings[f"group_by={group_by} {period}"] = await _timed(grouped)
    for period in ("30d", "24h"):
        async def lat(p: str = period) -> Any:
            return await insights.latency(store, SVC, p)
        timings[f"latency {period}"] = await _timed(lat)
    since = datetime.now(timezone.utc) - timedelta(hours=24)
    timings["alert rates 24h"] = await _timed(lambda: insights.rates(store, [SVC], since))
    timings["group_by=provider 30d tag=welcome"] = await _timed(
        lambda: insights.grouped_stats(store, SVC, "provider", "30d", "day", "welcome", 10))
    timings["group_by=recipient_domain 24h template=tpl-3"] = await _timed(
        lambda: insights.grouped_stats(store, SVC, "recipient_domain", "24h", "hour", None, 10, template="tpl-3"))
    timings["group_by=provider 24h tag+template (events FINAL)"] = await _timed(
        lambda: insights.grouped_stats(store, SVC, "provider", "24h", "hour", "welcome", 10, template="tpl-3"))
    timings["bounce reasons 7d"] = await _timed(lambda: insights.bounce_reasons(store, SVC, "7d"))
    out["queries"] = timings
    check = await insights.grouped_stats(store, SVC, "provider", "30d", "day", None, 10)
    out["delivered_30d_all_providers"] = sum(g["totals"]["delivered"] for g in check["groups"])
    _print_table(timings)
    return out


def _print_table(timings: dict[str, dict[str, float]]) -> None:
    width = max(len(k) for k in timings)
    print(f"{'query'.ljust(width)}  {'p50 ms':>8}  {'p99 ms':>8}")
    for name, t in timings.items():
        print(f"{name.ljust(width)}  {t['p50_ms']:>8}  {t['p99_ms']:>8}")
