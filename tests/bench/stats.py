"""Stats over 1,000,000 events in chDB: the query behind GET /services/{id}/stats."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from shared.store import queries
from shared.store.chdb_store import ChdbStore

EVENTS = 1_000_000


async def run() -> dict:
    store = ChdbStore(Path(tempfile.mkdtemp(prefix="postline-bench-stats-")))
    await store.migrate()
    # 1M events of one service over 30 days (types mixed as in real traffic), plus 1M of others
    await store.execute(f"""
        INSERT INTO postline.events
        SELECT toString(generateUUIDv4()) AS event_id,
               ['sent','delivered','delivered','delivered','bounced','opened','clicked','deferred','dropped','complained'][number % 10 + 1],
               now64(3) - toIntervalSecond(number % (30 * 86400)), 'w', if(number < {EVENTS}, 'svc-bench', concat('svc-', toString(number % 50))),
               toString(intDiv(number, 3)), concat('u', toString(number % 100000), '@example.com'),
               if(number % 4 = 0, ['welcome'], []), 250, '', '{{}}'
        FROM numbers({2 * EVENTS})""")
    out = {"events_in_service": EVENTS, "events_in_table": 2 * EVENTS}
    for period, bucket in (("7d", "day"), ("30d", "day"), ("24h", "hour")):
        times = []
        for _ in range(10):
            t = time.perf_counter()
            await queries.stats(store, "svc-bench", period, bucket, None)
            times.append((time.perf_counter() - t) * 1000)
        out[f"stats_{period}_{bucket}_ms"] = {"median": round(statistics.median(times), 1), "max": round(max(times), 1)}
    t = time.perf_counter()
    await queries.stats(store, "svc-bench", "30d", "day", "welcome")
    out["stats_30d_tag_ms"] = round((time.perf_counter() - t) * 1000, 1)
    out["sent_30d"] = (await queries.stats(store, "svc-bench", "30d", "day", None))["totals"]["sent"]
    return out
