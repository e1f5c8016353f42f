"""Read-model queries over the analytics store (stats, message lookup, message log).

Queries read with ``FINAL``: every copy of an event is loaded with the time of its first
copy (``insert_events``), so copies share the sorting key (service, time, type, event id)
and never count twice. (``FINAL`` +
count() is ~5x faster than uniqExact(event_id) on 1M events: see docs/benchmarks.md.) Where
an event's time matters (timeline, a message's status) it is the time of its first copy."""
from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from shared import events as ev
from shared.store.port import AnalyticsStore

PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Tracking events (ev.TRACKING_TYPES) are counted by distinct event id (two API processes may
# each record the same derived id at different times) and, as unique_*, by distinct (email, recipient).
UNIQUE_STATS = {"opened": "unique_opened", "clicked": "unique_clicked"}
# The state of a recipient is its latest lifecycle event by this precedence.
RECIPIENT_STATE_ORDER = ["sent", "deferred", "dropped", "delivered", "opened", "clicked", "bounced", "failed", "complained",
                         "unsubscribed"]
# A message's last event (``last_event_type``, ``email_page``): the types Resend has a
# ``last_event`` for (``unsubscribed`` has none), ties in time going to the later in this order.
LAST_EVENT_ORDER = ("scheduled", "sent", "deferred", "dropped", "delivered", "opened", "clicked", "bounced", "failed",
                    "complained", "canceled")


def _sql_in(types: tuple[str, ...]) -> str:
    """A constant type list as SQL (the vocabulary's own names: nothing from a request)."""
    return "(" + ", ".join(f"'{t}'" for t in types) + ")"


def _sql_array(types: tuple[str, ...]) -> str:
    """``_sql_in``'s list as an SQL array literal."""
    return "[" + _sql_in(types)[1:-1] + "]"


def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


async def message(store: AnalyticsStore, email_id: str, workspace_id: str) -> dict[str, Any] | None:
    rows = await store.query(
        "SELECT payload FROM postline.messages FINAL WHERE email_id = {id:String} AND workspace_id = {w:String} LIMIT 1",
        {"id": email_id, "w": workspace_id})
    if not rows:
        return None
    payload: dict[str, Any] = json.loads(rows[0]["payload"])
    return payload


async def timeline(store: AnalyticsStore, email_id: str, workspace_id: str) -> list[dict[str, Any]]:
    rows = await store.query(
        "SELECT any(payload) AS payload, min(time) AS t FROM postline.events "
        "WHERE email_id = {id:String} AND workspace_id = {w:String} GROUP BY event_id ORDER BY t, payload",
        {"id": email_id, "w": workspace_id})
    return [json.loads(r["payload"]) for r in rows]


def recipient_states(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Latest state per recipient from a timeline (time order, ties by precedence)."""
    out: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e["time"], RECIPIENT_STATE_ORDER.index(e["type"])
                                           if e["type"] in RECIPIENT_STATE_ORDER else 0)):
        rcpt = e.get("recipient")
        if rcpt:
            out[rcpt] = {"status": e["type"], "at": e["time"],
                         **{k: e[k] for k in ("smtp_code", "smtp_reply", "reason", "bounce_type", "bounce_class") if e.get(k) is not None}}
    return out


def last_event_type(events: list[dict[str, Any]], has_recipients: bool, scheduled_at: str | None) -> str:
    """The Postline type behind Resend's ``last_event`` of a message, from its timeline:
    ``canceled`` once it has one; else its latest event of ``LAST_EVENT_ORDER`` by time to
    the millisecond (what the store keeps), ties by that order; before any, ``failed`` when
    it has no recipient to send to, ``scheduled`` when it has a due time, else ``queued``.
    ``email_page`` computes the same in SQL (``_LAST_EVENT``) for the list."""
    if any(e["type"] == "canceled" for e in events):
        return "canceled"
    ranked = [(_ms(e["time"]), LAST_EVENT_ORDER.index(e["type"])) for e in events if e["type"] in LAST_EVENT_ORDER]
    if ranked:
        return LAST_EVENT_ORDER[max(ranked)[1]]
    if not has_recipients:
        return "failed"
    return "scheduled" if scheduled_at else "queued"


def _ms(iso: str) -> datetime:
    """An event's ISO time cut to the millisecond, as the store cuts it (services/analytics/rows.py)."""
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _filters(table: str, tag: str | None, template: str | None, params: dict[str, Any]) -> list[str]:
    """The SQL conditions of the ``tag`` and ``template`` filters on the columns of ``table``
    (an alias with its dot, or ''), their values added to ``params``."""
    conditions = []
    if tag:
        conditions.append(f"has({table}tags, {{tag:String}})")
        params["tag"] = tag
    if template:
        conditions.append(f"{table}template_id = {{template:String}}")
        params["template"] = template
    return conditions


async def stats(store: AnalyticsStore, service_id: str, period: str, bucket: str, tag: str | None,
                now: datetime | None = None, template: str | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start = now - PERIODS[period]
    start = start.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    trunc = "toStartOfHour" if bucket == "hour" else "toStartOfDay"
    params = {"s": service_id, "start": _fmt(start)}
    where = " AND ".join(["service_id = {s:String} AND time >= toDateTime64({start:String}, 3, 'UTC')",
                          *_filters("", tag, template, params)])
    rows = await store.query(
        f"SELECT toString({trunc}(time)) AS b, type, count() AS n FROM postline.events FINAL "
        f"WHERE {where} GROUP BY b, type ORDER BY b", params)
    keys = ev.RELEASED_TYPES + tuple(UNIQUE_STATS.values())
    buckets: dict[str, dict[str, int]] = {}
    t = start
    while t <= now:
        buckets[_fmt(t)] = {k: 0 for k in keys}
        t += step
    totals = {k: 0 for k in keys}
    for r in rows:
        if r["type"] not in totals or r["type"] in ev.TRACKING_TYPES:
            continue
        n = int(r["n"])
        totals[r["type"]] += n
        buckets.setdefault(r["b"], {k: 0 for k in keys})[r["type"]] += n
    for r in await tracking_counts(store, trunc, where, params):
        into = totals if r["total"] else buckets.setdefault(r["b"], {k: 0 for k in keys})
        into[r["type"]] = int(r["n"])
        if r["type"] in UNIQUE_STATS:
            into[UNIQUE_STATS[r["type"]]] = int(r["u"])
    return {"service_id": service_id, "period": period, "bucket": bucket, "tag": tag,
            **({"template": template} if template else {}), "totals": totals,
            "buckets": [{"start": k.replace(" ", "T") + "Z", **v} for k, v in sorted(buckets.items())]}


async def tracking_counts(store: AnalyticsStore, trunc: str, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Per bucket and over the whole period (``total``): distinct events and distinct
    (email, recipient) of each tracking type. The pairs are counted by their 64-bit hash
    (3x faster than the strings on 1M events: docs/benchmarks.md); two pairs would have to
    collide for a count to be off by one (odds ~1e-6 with 10 million distinct pairs)."""
    rows = await store.query(
        f"SELECT toString({trunc}(time)) AS b, type, count() AS n, uniqExact(cityHash64(email_id, recipient)) AS u, "
        f"grouping(b) AS total FROM postline.events FINAL WHERE {where} "
        f"AND type IN {_sql_in(ev.TRACKING_TYPES)} GROUP BY GROUPING SETS ((b, type), (type))", params)
    return rows


def encode_cursor(time_: str, email_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([time_, email_id]).encode()).decode()


_CURSOR_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,9})?")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises ``ValueError`` on anything but a cursor ``encode_cursor`` made (a forged time
    would otherwise reach the store as a value it cannot parse)."""
    time_, email_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    if not (isinstance(time_, str) and _CURSOR_TIME.fullmatch(time_) and isinstance(email_id, str) and len(email_id) <= 64):
        raise ValueError("not a cursor")
    return time_, email_id


# joins each message ``m`` of service ``{s:String}`` with its latest delivery status ``s.status``
_LATEST_STATUS = f"""LEFT JOIN (SELECT email_id, argMax(kind, first) AS status
           FROM (SELECT email_id, event_id, any(type) AS kind, min(time) AS first FROM postline.events
                 WHERE service_id = {{s:String}} AND type IN {_sql_in(ev.DELIVERY_TYPES)}
                 GROUP BY email_id, event_id)
           GROUP BY email_id) AS s ON s.email_id = m.email_id"""

# joins each message ``m`` of service ``{s:String}`` with what ``last_event_type`` reads of its
# timeline: ``e.last``, its latest event of LAST_EVENT_ORDER by (time, place in that order),
# '' before any; ``e.canceled``, 1 once it has a ``canceled`` event
_LAST_EVENT = f"""LEFT JOIN (SELECT email_id, argMax(kind, (first, indexOf({_sql_array(LAST_EVENT_ORDER)}, kind))) AS last,
                  max(kind = 'canceled') AS canceled
           FROM (SELECT email_id, event_id, any(type) AS kind, min(time) AS first FROM postline.events
                 WHERE service_id = {{s:String}} AND type IN {_sql_in(LAST_EVENT_ORDER)}
                 GROUP BY email_id, event_id)
           GROUP BY email_id) AS e ON e.email_id = m.email_id"""


async def message_log(store: AnalyticsStore, service_id: str, status: str | None, to: str | None, tag: str | None,
                      limit: int, cursor: str | None, since: datetime | None = None,
                      template: str | None = None) -> dict[str, Any]:
    where = ["m.service_id = {s:String}"]
    params: dict[str, Any] = {"s": service_id, "limit": limit + 1}
    if since:
        where.append("m.time >= toDateTime64({since:String}, 3, 'UTC')")
        params["since"] = _fmt(since)
    if to:
        where.append("(has(m.to_addrs, {to:String}) OR has(m.cc_addrs, {to:String}) OR has(m.bcc_addrs, {to:String}))")
        params["to"] = to
    where += _filters("m.", tag, template, params)
    if cursor:
        ct, cid = decode_cursor(cursor)
        where.append("(m.time, m.email_id) < (toDateTime64({ct:String}, 3, 'UTC'), {cid:String})")
        params.update(ct=ct, cid=cid)
    status_filter = ""
    if status:
        status_filter = "WHERE status = {status:String}"
        params["status"] = status
    sql = f"""
SELECT m.email_id AS email_id, toString(m.time) AS time, m.from_addr AS from_addr, m.subject AS subject,
       m.to_addrs AS to_addrs, m.tags AS tags, m.template_id AS template_id, m.mode AS mode, if(s.status = '', 'queued', s.status) AS status
FROM (SELECT * FROM postline.messages AS m FINAL WHERE {' AND '.join(where)}) AS m
{_LATEST_STATUS}
{status_filter}
ORDER BY m.time DESC, m.email_id DESC
LIMIT {{limit:UInt32}}"""
    rows = await store.query(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{"id": r["email_id"], "created_at": r["time"], "from": r["from_addr"], "subject": r["subject"],
              "to": r["to_addrs"], "tags": r["tags"], "template_id": r["template_id"] or None, "mode": r["mode"],
              "status": r["status"]} for r in rows]
    next_cursor = encode_cursor(rows[-1]["time"], rows[-1]["email_id"]) if more and rows else None
    return {"data": items, "next_cursor": next_cursor}


async def email_page(store: AnalyticsStore, service_id: str, limit: int, after: str | None = None,
                     before: str | None = None) -> tuple[list[dict[str, Any]], bool] | None:
    """Resend's ``GET /emails`` page: the service's messages newest first, older than the
    message ``after`` or newer than ``before`` (ids); with whether more follow that way.
    None when the cursor id is not a message of the service. Rows: the request's summary
    fields, ``sending_domain`` ('' for the sandbox sender) and ``last_event`` (Postline's
    type, as ``last_event_type`` picks it for ``GET /emails/{id}``)."""
    params: dict[str, Any] = {"s": service_id, "limit": limit + 1, "c": after or before or ""}
    where, order = "", "DESC"
    if after or before:
        found = await store.query("SELECT toString(time) AS t FROM postline.messages FINAL "
                                  "WHERE service_id = {s:String} AND email_id = {c:String} LIMIT 1", params)
        if not found:
            return None
        params["ct"] = found[0]["t"]
        where = f" AND (m.time, m.email_id) {'<' if after else '>'} (toDateTime64({{ct:String}}, 3, 'UTC'), {{c:String}})"
        order = "DESC" if after else "ASC"
    rows = await store.query(f"""
SELECT m.email_id AS email_id, toString(m.time) AS time, m.from_addr AS from_addr, m.subject AS subject,
       m.to_addrs AS to_addrs, m.cc_addrs AS cc_addrs, m.bcc_addrs AS bcc_addrs,
       JSONExtract(m.payload, 'reply_to', 'Array(String)') AS reply_to,
       JSONExtractString(m.payload, 'scheduled_at') AS scheduled_at,
       JSONExtractString(m.payload, 'sending_domain') AS sending_domain,
       multiIf(e.canceled = 1, 'canceled', e.last != '', e.last,
               empty(JSONExtract(m.payload, 'recipients', 'Array(String)')), 'failed',
               scheduled_at != '', 'scheduled', 'queued') AS last_event
FROM (SELECT * FROM postline.messages AS m FINAL WHERE m.service_id = {{s:String}}{where}) AS m
{_LAST_EVENT}
ORDER BY m.time {order}, m.email_id {order}
LIMIT {{limit:UInt32}}""", params)
    page = rows[:limit] if order == "DESC" else list(reversed(rows[:limit]))
    return page, len(rows) > limit


async def messages_since(store: AnalyticsStore, service_id: str, since: datetime) -> int:
    rows = await store.query(
        "SELECT count() AS n FROM postline.messages FINAL WHERE service_id = {s:String} "
        "AND time >= toDateTime64({t:String}, 3, 'UTC')", {"s": service_id, "t": _fmt(since)})
    return int(rows[0]["n"]) if rows else 0


# ---- queries of the relay, the API's webhook and dev-inbox routes, analytics and ops ----

async def message_by_id(store: AnalyticsStore, email_id: str) -> dict[str, Any] | None:
    """A message's request payload whatever its workspace (the inbound bounce processor
    knows the id from a signed VERP token, not the workspace)."""
    rows = await store.query(
        "SELECT payload FROM postline.messages FINAL WHERE email_id = {id:String} LIMIT 1", {"id": email_id})
    payload: dict[str, Any] = json.loads(rows[0]["payload"])
    return payload if rows else None


async def own_email_ids(store: AnalyticsStore, workspace_id: str, email_ids: list[str]) -> set[str]:
    """Which of ``email_ids`` are messages of ``workspace_id``."""
    if not email_ids:
        return set()
    # one scalar parameter per id: chDB's parameters take no Python lists
    names = {f"i{n}": eid for n, eid in enumerate(email_ids)}
    rows = await store.query(
        "SELECT DISTINCT email_id FROM postline.messages WHERE workspace_id = {w:String} AND email_id IN ("
        + ", ".join(f"{{{n}:String}}" for n in names) + ")", {"w": workspace_id, **names})
    return {r["email_id"] for r in rows}


async def recent_soft_bounces(store: AnalyticsStore, service_id: str, recipient: str, except_event_id: str) -> int:
    """Soft bounces of ``recipient`` in the service in the last 7 days, other than the given event."""
    rows = await store.query(
        "SELECT count() AS n FROM postline.events FINAL WHERE service_id = {s:String} AND recipient = {r:String} "
        "AND type = 'bounced' AND reason = 'soft' AND event_id != {id:String} "
        "AND time >= now64(3) - INTERVAL 7 DAY",
        {"s": service_id, "r": recipient, "id": except_event_id})
    return int(rows[0]["n"]) if rows else 0


async def message_fields(store: AnalyticsStore, service_ids: list[str], email_ids: list[str]) -> list[dict[str, Any]]:
    """``email_id, tags, from_addr, subject, template_id`` of the given messages (those loaded so far)."""
    return await store.query(
        "SELECT email_id, any(tags) AS tags, any(from_addr) AS from_addr, any(subject) AS subject, "
        "any(template_id) AS template_id "
        "FROM postline.messages WHERE service_id IN (SELECT arrayJoin(JSONExtract({svcs:String}, 'Array(String)'))) "
        "AND email_id IN (SELECT arrayJoin(JSONExtract({ids:String}, 'Array(String)'))) GROUP BY email_id",
        # JSON strings, which both adapters pass alike; IN (subquery) on the table's sorting key uses its index
        {"svcs": json.dumps(sorted(service_ids)), "ids": json.dumps(sorted(email_ids))})


async def delivery_paths(store: AnalyticsStore, service_ids: list[str], email_ids: list[str]) -> list[dict[str, Any]]:
    """``email_id, recipient, provider, source_ip`` of the loaded deliveries of the given messages."""
    return await store.query(
        "SELECT email_id, recipient, any(provider) AS provider, any(source_ip) AS source_ip FROM postline.events "
        "WHERE service_id IN (SELECT arrayJoin(JSONExtract({svcs:String}, 'Array(String)'))) "
        "AND email_id IN (SELECT arrayJoin(JSONExtract({ids:String}, 'Array(String)'))) AND type = 'delivered' "
        "GROUP BY email_id, recipient", {"svcs": json.dumps(sorted(service_ids)), "ids": json.dumps(sorted(email_ids))})


async def webhook_attempts(store: AnalyticsStore, service_id: str, webhook_id: str, limit: int,
                           event_id: str | None = None) -> list[dict[str, Any]]:
    """A webhook's recent delivery attempts (of one event, when ``event_id``), newest first."""
    one = " AND event_id = {e:String}" if event_id else ""
    return await store.query(
        "SELECT attempt_id, event_id, event_type, attempt, status_code, latency_ms, outcome, error, toString(time) AS time "
        "FROM postline.webhook_attempts FINAL WHERE service_id = {s:String} AND webhook_id = {w:String}" + one +
        " ORDER BY time DESC LIMIT {n:UInt32}", {"s": service_id, "w": webhook_id, "n": limit, "e": event_id or ""})


async def webhook_events(store: AnalyticsStore, service_id: str, webhook_id: str, limit: int) -> list[dict[str, Any]]:
    """The events a webhook was sent, newest first: type, first attempt's time (``first_at``),
    latest outcome."""
    return await store.query(
        "SELECT event_id, any(event_type) AS event_type, toString(min(time)) AS first_at, argMax(outcome, time) AS outcome "
        "FROM postline.webhook_attempts FINAL WHERE service_id = {s:String} AND webhook_id = {w:String} "
        "GROUP BY event_id ORDER BY min(time) DESC, event_id DESC LIMIT {n:UInt32}",
        {"s": service_id, "w": webhook_id, "n": limit})


async def events_to_replay(store: AnalyticsStore, service_id: str, limit: int, event_id: str | None = None,
                           since: datetime | None = None, until: datetime | None = None,
                           types: list[str] | None = None) -> list[dict[str, Any]]:
    """Event payloads of a service in time order: the one ``event_id``, or those of ``types``
    from ``since`` (to ``until`` when given)."""
    where, params = ["service_id = {s:String}"], dict[str, Any](s=service_id, n=limit)
    if event_id:
        where.append("event_id = {e:String}")
        params["e"] = event_id
    elif since is None:
        raise ValueError("events_to_replay needs an event id or a start time")
    else:
        where.append("time >= toDateTime64({since:String}, 3, 'UTC') AND type IN {types:Array(String)}")
        params.update(since=_fmt(since), types=types or [])
        if until:
            where.append("time < toDateTime64({until:String}, 3, 'UTC')")
            params["until"] = _fmt(until)
    rows = await store.query(f"SELECT payload FROM postline.events FINAL WHERE {' AND '.join(where)} "
                             "ORDER BY time LIMIT {n:UInt32}", params)
    return [json.loads(r["payload"]) for r in rows]


async def insert_events(store: AnalyticsStore, rows: list[dict[str, Any]], token: str) -> None:
    """Load event rows so that each event id is one row whatever its time (issue 17).

    A copy of an event loaded before (a resend after a relay failover, the ``sent`` of an
    Idempotency-Key retry, a redelivered batch) takes the time of the event's first copy,
    recorded in ``postline.event_ids``; it then has the same sorting key as that copy and the
    two collapse (ReplacingMergeTree, read with ``FINAL``). Copies within one batch keep the
    first. The ids go in before the rows: a crash in between redelivers the batch, which
    finds its own times. (Two analytics processes loading copies of one event at the same
    moment could both miss the other: events are keyed by email, so one partition, one
    consumer, outside a rebalance.)

    ``postline.event_ids`` rows carry the event's type, tags, template and delivery-path
    columns (``EVENT_ID_COLUMNS``): its materialized views count each fresh event once into
    the insight rollups (shared/store/migrations.py, docs/analytics.md)."""
    first: dict[str, dict[str, Any]] = {}
    for r in rows:
        first.setdefault(r["event_id"], r)
    known = await _first_times(store, list(first.values()))
    fresh = [r for eid, r in first.items() if eid not in known]
    for r in first.values():
        r["time"] = known.get(r["event_id"], r["time"])
    if fresh:
        await store.insert("event_ids", [{k: r[k] for k in EVENT_ID_COLUMNS if k in r} for r in fresh], f"{token}-ids")
    await store.insert("events", list(first.values()), token)


# What postline.event_ids keeps of an event's first copy: its time, and what the insight
# rollups (migrations 13–16) group by, which a materialized view reads from each insert.
EVENT_ID_COLUMNS = ("service_id", "event_id", "time", "type", "tags", "template_id", "provider", "recipient_domain",
                    "bounce_class", "source_ip", "tls", "smtp_code", "smtp_reply", "latency_ms")
LOOKUP_CHUNK = 500  # ids per lookup query: bounded query and parameter size


async def _first_times(store: AnalyticsStore, rows: list[dict[str, Any]]) -> dict[str, str]:
    """``{event_id: time of its first copy}`` for the ids of ``rows`` already loaded."""
    known: dict[str, str] = {}
    for i in range(0, len(rows), LOOKUP_CHUNK):
        chunk = rows[i:i + LOOKUP_CHUNK]
        found = await store.query(
            "SELECT event_id, toString(min(time)) AS t FROM postline.event_ids "
            "WHERE service_id IN (SELECT arrayJoin(splitByChar(',', {s:String}))) "
            "AND event_id IN (SELECT arrayJoin(splitByChar(',', {ids:String}))) GROUP BY event_id",
            {"s": ",".join(sorted({r["service_id"] for r in chunk})), "ids": ",".join(r["event_id"] for r in chunk)})
        known.update((f["event_id"], f["t"]) for f in found)
    return known
