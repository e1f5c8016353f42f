"""Deliverability insights over the analytics store (docs/analytics.md): counts
per group, queued→delivered latency per provider, top bounce reasons, the rates alerts watch.

Grouped counts and latency read the rollups (migrations 11–18), fed from
``postline.event_ids``, which takes each event id once: no ``FINAL``, one row per service,
dimension, hour, type and group, so a query reads thousands of rows, not millions of events.
A ``tag`` or ``template`` filter crosses two dimensions the rollup keeps apart: those
queries read ``postline.events FINAL`` (its insight columns) instead, slower on big services."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from shared import events as ev
from shared.store.port import AnalyticsStore
from shared.store.queries import PERIODS, _filters, _fmt, _sql_in

GROUP_BY = ("provider", "recipient_domain", "bounce_class", "source_ip", "tag", "template", "tls")
"""What ``stats?group_by=`` accepts (the rollup's ``dim`` values, but ``service``)."""
UNKNOWN = "unknown"  # an event from before the field existed, or one the relay could not place
NONE = "none"  # no tag / no template
OTHER = "other"  # the groups after the top N
# The events' column of each dimension, for the filtered (FINAL) path; tags are an array.
_COLUMN = {"provider": "provider", "recipient_domain": "recipient_domain", "bounce_class": "bounce_class",
           "source_ip": "source_ip", "template": "template_id", "tls": "tls"}
# The types each dimension is about (the rollup's ARRAY JOIN in migrations.ROLLUP_SELECT says the same)
_TYPES_OF = {"provider": ("delivered", "deferred", "bounced", "complained"),
             "source_ip": ("delivered", "deferred", "bounced", "complained"),
             "bounce_class": ("bounced",), "tls": ("delivered",)}
COUNTED = tuple(t for t in ev.RELEASED_TYPES)
# bucket → (rollup, its time column): migrations.GRAINS
_ROLLUP = {"hour": ("postline.event_rollup", "hour"), "day": ("postline.event_rollup_daily", "day")}
_LATENCY = {"hour": ("postline.latency_rollup", "hour"), "day": ("postline.latency_rollup_daily", "day")}


def _window(period: str, bucket: str, now: datetime) -> tuple[datetime, str]:
    start = (now - PERIODS[period]).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    return start, ("toStartOfHour" if bucket == "hour" else "toStartOfDay")


def _label(dim: str, value: str) -> str:
    if value:
        return value
    return NONE if dim in ("tag", "template") else UNKNOWN


async def grouped_stats(store: AnalyticsStore, service_id: str, group_by: str, period: str, bucket: str,
                        tag: str | None, limit: int, now: datetime | None = None,
                        template: str | None = None) -> dict[str, Any]:
    """Counts per type (``ev.RELEASED_TYPES``; tracking types by distinct event) of each group,
    totals and zero-filled buckets: the ``limit`` largest groups by total events, then one
    ``other`` group with the rest. ``group_by`` must be one of ``GROUP_BY`` (ValueError)."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by: unknown grouping {group_by!r}")
    now = now or datetime.now(timezone.utc)
    start, trunc = _window(period, bucket, now)
    params: dict[str, Any] = {"s": service_id, "start": _fmt(start), "dim": group_by}
    value = "value"
    crossed = _crossed(group_by, tag, template)
    if crossed is None:  # both filters, or grouping by the filtered field: the events themselves
        source, col, where = _events_source(group_by, tag, template, params), "hour", "1"
    else:
        source, col = _ROLLUP[bucket]
        where = (f"service_id = {{s:String}} AND dim = {{dim:String}} AND {col} >= toDateTime({{start:String}}, 'UTC') "
                 f"AND type IN {_sql_in(COUNTED)}")
        if crossed:  # `tag|provider` rows of one tag: value = tag U+001F provider
            params.update(dim=f"{crossed[0]}|{group_by}", prefix=crossed[1] + "\x1f")
            where += " AND startsWith(value, {prefix:String})"
            value = "substring(value, length({prefix:String}) + 1)"
    # the top groups are chosen in the store: only their buckets, and the rest summed, come back
    rows = await store.query(
        f"SELECT {value} IN (SELECT {value} AS v FROM {source} WHERE {where} GROUP BY v "
        f"ORDER BY sum(n) DESC, v LIMIT {{k:UInt32}}) AS top, if(top, {value}, '') AS g, "
        f"toString({trunc}({col})) AS b, type, sum(n) AS n FROM {source} WHERE {where} "
        "GROUP BY top, g, b, type", {**params, "k": limit})
    groups = _shape(rows, group_by, start, timedelta(hours=1) if bucket == "hour" else timedelta(days=1), now)
    return {"service_id": service_id, "group_by": group_by, "period": period, "bucket": bucket, "tag": tag,
            **({"template": template} if template else {}), "limit": limit, "groups": groups}


def _crossed(group_by: str, tag: str | None, template: str | None) -> tuple[str, str] | None | tuple[()]:
    """How the rollup answers: ``()`` unfiltered, ``(field, value)`` through the crossed
    ``tag|…``/``template|…`` rows, None when it cannot (both filters, or grouping by the filter)."""
    if not tag and not template:
        return ()
    if tag and template:
        return None
    field, value = ("tag", tag) if tag else ("template", template)
    return None if group_by == field or value is None else (field, value)


def _events_source(group_by: str, tag: str | None, template: str | None, params: dict[str, Any]) -> str:
    """The filtered path: the service's events of the period as rollup-shaped rows
    ``(value, hour, type, n)``, one per event (and per tag), from ``postline.events FINAL``."""
    where = " AND ".join(["service_id = {s:String} AND time >= toDateTime64({start:String}, 3, 'UTC')",
                          *_filters("", tag, template, params)])
    value = "arrayJoin(if(empty(tags), [''], tags))" if group_by == "tag" else _COLUMN[group_by]
    return (f"(SELECT {value} AS value, toDateTime(time) AS hour, type, toUInt64(1) AS n FROM postline.events FINAL "
            f"WHERE {where} AND type IN {_sql_in(_TYPES_OF.get(group_by, COUNTED))})")


def _shape(rows: list[dict[str, Any]], dim: str, start: datetime, step: timedelta, now: datetime) -> list[dict[str, Any]]:
    """Rows ``(top, g, b, type, n)`` → the top groups, largest first, then ``other`` (the
    rows with ``top`` false), each with totals and zero-filled buckets."""
    def empty() -> dict[str, int]:
        return {k: 0 for k in COUNTED}

    per: dict[tuple[bool, str], dict[str, dict[str, int]]] = {}
    for r in rows:
        bucket = per.setdefault((not r["top"], r["g"]), {}).setdefault(r["b"], empty())
        bucket[r["type"]] += int(r["n"])
    volume = {g: sum(sum(c.values()) for c in b.values()) for g, b in per.items()}
    out = []
    for rest, value in sorted(per, key=lambda g: (g[0], -volume[g], g[1])):
        filled: dict[str, dict[str, int]] = {}
        t = start
        while t <= now:
            filled[_fmt(t)] = empty()
            t += step
        totals = empty()
        for b, counts in per[(rest, value)].items():
            filled[b] = counts
            for k, n in counts.items():
                totals[k] += n
        out.append({"key": OTHER if rest else _label(dim, value), "totals": totals,
                    "buckets": [{"start": k.replace(" ", "T") + "Z", **v} for k, v in sorted(filled.items())]})
    return out


async def latency(store: AnalyticsStore, service_id: str, period: str, now: datetime | None = None) -> dict[str, Any]:
    """Queued→delivered milliseconds (p50/p90/p99: bfloat16 quantiles, within 1% of the exact value) per provider and overall,
    over the deliveries of ``period`` that carry their accept time (``queued_at``); 7d and
    30d start at the beginning of their first day (the daily rollup), as ``stats`` buckets do."""
    now = now or datetime.now(timezone.utc)
    start, _ = _window(period, "hour" if period in ("1h", "24h") else "day", now)
    table, col = _LATENCY["hour" if period in ("1h", "24h") else "day"]
    rows = await store.query(
        "SELECT provider, quantilesBFloat16Merge(0.5, 0.9, 0.99)(q) AS q, sum(n) AS n, grouping(provider) AS overall "
        f"FROM {table} WHERE service_id = {{s:String}} AND {col} >= toDateTime({{start:String}}, 'UTC') "
        "GROUP BY GROUPING SETS ((provider), ()) ORDER BY n DESC, provider", {"s": service_id, "start": _fmt(start)})

    def view(r: dict[str, Any]) -> dict[str, Any]:
        p50, p90, p99 = (round(float(x)) for x in r["q"])
        return {"delivered": int(r["n"]), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99}

    overall = next((view(r) for r in rows if r["overall"] and int(r["n"])), None)
    return {"service_id": service_id, "period": period, "overall": overall,
            "providers": [{"provider": _label("provider", r["provider"]), **view(r)} for r in rows if not r["overall"]]}


async def bounce_reasons(store: AnalyticsStore, service_id: str, period: str, limit: int = 10,
                         now: datetime | None = None) -> list[dict[str, Any]]:
    """The most frequent bounce replies of ``period`` (from the rollup's ``bounce_reply`` rows:
    addresses in ``<…>`` masked, so one reply to many recipients is one line): code, class, reply, count."""
    now = now or datetime.now(timezone.utc)
    bucket = "hour" if period in ("1h", "24h") else "day"
    start, _ = _window(period, bucket, now)
    table, col = _ROLLUP[bucket]
    rows = await store.query(
        f"SELECT value, sum(n) AS n FROM {table} WHERE service_id = {{s:String}} AND dim = 'bounce_reply' "
        f"AND {col} >= toDateTime({{start:String}}, 'UTC') AND type = 'bounced' "
        "GROUP BY value ORDER BY n DESC, value LIMIT {k:UInt32}", {"s": service_id, "start": _fmt(start), "k": limit})
    out = []
    for r in rows:
        code, bounce_class, reply = (r["value"].split("\x1f", 2) + ["", ""])[:3]
        out.append({"smtp_code": int(code or 0), "bounce_class": bounce_class, "reply": reply, "n": int(r["n"])})
    return out


async def rates(store: AnalyticsStore, service_ids: list[str], since: datetime) -> dict[str, dict[str, int]]:
    """Per service: delivered, bounced and complained events since ``since`` (the alert window)."""
    if not service_ids:
        return {}
    rows = await store.query(
        "SELECT service_id, type, sum(n) AS n FROM postline.event_rollup WHERE dim = 'service' "
        "AND service_id IN (SELECT arrayJoin(JSONExtract({svcs:String}, 'Array(String)'))) "
        "AND hour >= toDateTime({start:String}, 'UTC') AND type IN ('delivered', 'bounced', 'complained') "
        "GROUP BY service_id, type", {"svcs": _json(service_ids), "start": _fmt(since)})
    out: dict[str, dict[str, int]] = {s: {"delivered": 0, "bounced": 0, "complained": 0} for s in service_ids}
    for r in rows:
        out[r["service_id"]][r["type"]] = int(r["n"])
    return out


async def alert_states(store: AnalyticsStore, service_ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest ``alert`` event of each (service, kind) with no provider: ``state``, ``email_id`` (the
    episode's key), ``time``."""
    if not service_ids:
        return {}
    rows = await store.query(
        "SELECT service_id, JSONExtractString(payload, 'kind') AS kind, argMax(payload, (time, JSONExtractString(payload, 'state') = 'cleared')) AS last "
        "FROM postline.events FINAL WHERE type = 'alert' "
        "AND service_id IN (SELECT arrayJoin(JSONExtract({svcs:String}, 'Array(String)'))) "
        "AND JSONExtractString(payload, 'provider') = '' GROUP BY service_id, kind", {"svcs": _json(service_ids)})
    return {(r["service_id"], r["kind"]): json.loads(r["last"]) for r in rows}


async def active_alerts(store: AnalyticsStore, service_id: str) -> list[dict[str, Any]]:
    """The service's alerts raised and not cleared (the banner on its dashboard page)."""
    rows = await store.query(
        "SELECT argMax(payload, (time, JSONExtractString(payload, 'state') = 'cleared')) AS last "
        "FROM postline.events FINAL WHERE service_id = {s:String} AND type = 'alert' GROUP BY email_id",
        {"s": service_id})
    alerts = [json.loads(r["last"]) for r in rows]
    return sorted((a for a in alerts if a.get("state") == "raised"), key=lambda a: a["time"])


def _json(values: list[str]) -> str:
    return json.dumps(sorted(values))
