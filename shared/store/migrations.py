"""Versioned ClickHouse schema. Tables in database ``postline`` are a public interface
(see docs/analytics.md): add columns and tables, never change the meaning of one.

A step is ``(version, sql)`` or ``(version, sql, only_if)``: ``only_if`` is a query, and the
step runs only when it returns a row (so a step that cannot be repeated, like a rename, is
skipped when a crash came after it ran but before it was recorded)."""

# The groups an event counts in (docs/analytics.md): a group_by counts only the event types
# that carry it (provider and source IP: outcomes and complaints; bounce class: bounces; TLS:
# deliveries), and ('service', '') is every event once (alert rates). Each insert's block is
# summed by the view already (a batch of 5,000 events is a few hundred rows). {start} is the
# rollup's time column: `hour` (toStartOfHour) or `day` (toStartOfDay).
ROLLUP_SELECT = """SELECT service_id, {trunc}(time) AS {start}, type, g.1 AS dim, g.2 AS value, count() AS n
FROM (SELECT service_id, time, type, tags, template_id, arrayConcat(
    [('service', ''), ('recipient_domain', recipient_domain), ('template', template_id)],
    arrayMap(t -> ('tag', t), if(empty(tags), [''], tags)),
    if(type IN ('delivered', 'deferred', 'bounced', 'complained'), [('provider', provider), ('source_ip', source_ip)], []),
    if(type = 'bounced', [('bounce_class', bounce_class)], []),
    if(type = 'delivered', [('tls', tls)], [])) AS base,
    if(type = 'bounced', [('bounce_reply', concat(toString(smtp_code), '\\x1f', bounce_class, '\\x1f',
        leftUTF8(replaceRegexpAll(smtp_reply, '<[^<>]*>', '<…>'), 200)))], []) AS replies
      FROM {source})
ARRAY JOIN arrayConcat(base, replies,
    arrayFlatten(arrayMap(t -> arrayMap(p -> (concat('tag|', p.1), concat(t, '\\x1f', p.2)),
                                        arrayFilter(p -> p.1 NOT IN ('service', 'tag'), base)), tags)),
    if(template_id = '', [], arrayMap(p -> (concat('template|', p.1), concat(template_id, '\\x1f', p.2)),
                                      arrayFilter(p -> p.1 NOT IN ('service', 'template'), base)))) AS g
WHERE type != ''
GROUP BY service_id, {start}, type, dim, value"""
# ``tag|<dim>`` and ``template|<dim>`` rows (value: the tag or template, U+001F, the group)
# answer `stats?group_by=<dim>&tag=` (or `&template=`) from the rollup as well. ``bounce_reply``
# rows (code U+001F class U+001F reply, its <addresses> masked so one reply is one row) are the
# dashboard's top bounce reasons.
# bfloat16 quantiles: a state is a map of distinct bfloat16 values to counts (a few hundred
# for latencies), cheap to merge over 720 hours, within 1% of the exact quantile.
LATENCY_SELECT = """SELECT service_id, {trunc}(time) AS {start}, provider,
       quantilesBFloat16State(0.5, 0.9, 0.99)(toUInt32(least(latency_ms, 4294967295))) AS q, count() AS n
FROM {source}
WHERE type = 'delivered' AND latency_ms >= 0
GROUP BY service_id, {start}, provider"""
# (table, time column, truncation): hourly rollups for 1h/24h, daily ones for 7d/30d (a
# 30-day query over a thousand recipient domains reads 30 rows per domain and type, not 720)
GRAINS = (("", "hour", "toStartOfHour"), ("_daily", "day", "toStartOfDay"))
FROM_EVENTS = "(SELECT * FROM postline.events FINAL)"


def _insight_steps(first: int) -> tuple[list[tuple[int, str]], set[int]]:
    """The rollup tables, their materialized views on postline.event_ids, and the backfill of
    the events loaded before them, for each grain; and the backfills' versions (``BACKFILLS``)."""
    steps: list[str] = []
    backfills: set[int] = set()
    for suffix, start, trunc in GRAINS:
        counts, latency = f"postline.event_rollup{suffix}", f"postline.latency_rollup{suffix}"
        select = {"trunc": trunc, "start": start}
        steps += [f"""
CREATE TABLE IF NOT EXISTS {counts} (
    service_id String,
    {start}    DateTime('UTC'),
    type       LowCardinality(String),
    dim        LowCardinality(String),
    value      String,
    n          UInt64
) ENGINE = SummingMergeTree(n)
PARTITION BY toYYYYMM({start})
ORDER BY (service_id, dim, {start}, type, value)""", f"""
CREATE TABLE IF NOT EXISTS {latency} (
    service_id String,
    {start}    DateTime('UTC'),
    provider   LowCardinality(String),
    q          AggregateFunction(quantilesBFloat16(0.5, 0.9, 0.99), UInt32),
    n          SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM({start})
ORDER BY (service_id, {start}, provider)""",
                  f"CREATE MATERIALIZED VIEW IF NOT EXISTS {counts}_mv TO {counts} AS "
                  + ROLLUP_SELECT.format(source="postline.event_ids", **select),
                  f"CREATE MATERIALIZED VIEW IF NOT EXISTS {latency}_mv TO {latency} AS "
                  + LATENCY_SELECT.format(source="postline.event_ids", **select),
                  f"INSERT INTO {counts} " + ROLLUP_SELECT.format(source=FROM_EVENTS, **select),
                  f"INSERT INTO {latency} " + LATENCY_SELECT.format(source=FROM_EVENTS, **select)]
        backfills.update((first + len(steps) - 2, first + len(steps) - 1))
    return [(first + i, sql) for i, sql in enumerate(steps)], backfills


_INSIGHT_STEPS, BACKFILLS = _insight_steps(13)
"""``BACKFILLS``: steps that add to what a table holds (the rollups' backfills), so running one
twice counts its rows twice: ``AnalyticsStore.migrate`` runs each under a claim (exactly one
migrator does; shared/store/port.py). Every other step can run any number of times."""


MIGRATIONS: list[tuple[int, str] | tuple[int, str, str]] = [
    (1, "CREATE DATABASE IF NOT EXISTS postline"),
    (2, """
CREATE TABLE IF NOT EXISTS postline.events (
    event_id     String,
    type         LowCardinality(String),
    time         DateTime64(3, 'UTC'),
    workspace_id String,
    service_id   String,
    email_id     String,
    recipient    String,
    tags         Array(String),
    smtp_code    UInt16,
    reason       String,
    payload      String,
    INDEX idx_email email_id TYPE bloom_filter GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (service_id, time, type, event_id)
"""),
    (3, """
CREATE TABLE IF NOT EXISTS postline.messages (
    email_id     String,
    time         DateTime64(3, 'UTC'),
    workspace_id String,
    service_id   String,
    mode         LowCardinality(String),
    from_addr    String,
    subject      String,
    to_addrs     Array(String),
    cc_addrs     Array(String),
    bcc_addrs    Array(String),
    tags         Array(String),
    payload      String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (service_id, email_id)
"""),
    (4, """
CREATE TABLE IF NOT EXISTS postline.webhook_attempts (
    attempt_id   String,
    time         DateTime64(3, 'UTC'),
    workspace_id String,
    service_id   String,
    webhook_id   String,
    event_id     String,
    event_type   LowCardinality(String),
    attempt      UInt16,
    status_code  UInt16,
    latency_ms   Float32,
    outcome      LowCardinality(String),
    error        String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (service_id, webhook_id, time, attempt_id)
TTL toDateTime(time) + INTERVAL 30 DAY
"""),
    # 5–6: one row per event id whatever its time. An event emitted again with a new time (a
    # resend after a relay failover, the `sent` of an Idempotency-Key retry) would be a second
    # row under step 2's key, which holds the time (kept: stats skip by time). So the loader
    # (queries.insert_events) gives every copy the time of the event's first copy, recorded
    # here, and the copies collapse in postline.events. Step 6 records the ids already loaded.
    (5, """
CREATE TABLE IF NOT EXISTS postline.event_ids (
    service_id   String,
    event_id     String,
    time         DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (service_id, event_id)
"""),
    (6, "INSERT INTO postline.event_ids SELECT service_id, event_id, min(time) FROM postline.events "
        "GROUP BY service_id, event_id"),
    # 7–8: the stored template a message was rendered from ('' when none): stats and the
    # message log filter on it (docs/templates.md).
    (7, "ALTER TABLE postline.messages ADD COLUMN IF NOT EXISTS template_id String DEFAULT ''"),
    (8, "ALTER TABLE postline.events ADD COLUMN IF NOT EXISTS template_id String DEFAULT ''"),
    # 9–10: received mail (docs/receiving.md). Rows expire
    # at ``expires_at`` (the service's retention when the mail came): the TTL drops them in
    # merges, the housekeeping purge (shared/store/received.py) at once, and reads skip them.
    (9, """
CREATE TABLE IF NOT EXISTS postline.received_emails (
    email_id     String,
    time         DateTime64(3, 'UTC'),
    expires_at   DateTime('UTC'),
    workspace_id String,
    service_id   String,
    from_addr    String,
    subject      String,
    to_addrs     Array(String),
    message_id   String,
    size         UInt64,
    payload      String
) ENGINE = ReplacingMergeTree
ORDER BY (service_id, email_id)
TTL expires_at
"""),
    (10, """
CREATE TABLE IF NOT EXISTS postline.received_attachments (
    service_id    String,
    email_id      String,
    attachment_id String,
    expires_at    DateTime('UTC'),
    size          UInt64,
    content       String
) ENGINE = ReplacingMergeTree
ORDER BY (service_id, email_id, attachment_id)
TTL expires_at
"""),
    # 11–24: deliverability insights (docs/analytics.md). The events' delivery path
    # as columns (rows.insight_columns fills them; rows loaded before fall back to their
    # payload, so old events keep counting: '' reads as "unknown"). Grouped stats and latency
    # read two rollups fed by a materialized view on postline.event_ids: that table receives
    # each event id once (queries.insert_events), so the rollups count every event once
    # without FINAL and stay small (one row per service, hour, type and group).
    (11, """
ALTER TABLE postline.events
    ADD COLUMN IF NOT EXISTS provider LowCardinality(String) DEFAULT JSONExtractString(payload, 'provider'),
    ADD COLUMN IF NOT EXISTS recipient_domain LowCardinality(String) DEFAULT lower(splitByChar('@', recipient)[-1]),
    ADD COLUMN IF NOT EXISTS bounce_class LowCardinality(String) DEFAULT JSONExtractString(payload, 'bounce_class'),
    ADD COLUMN IF NOT EXISTS source_ip LowCardinality(String) DEFAULT JSONExtractString(payload, 'source_ip'),
    ADD COLUMN IF NOT EXISTS tls LowCardinality(String) DEFAULT if(type = 'delivered' AND JSONHas(payload, 'tls'),
        if(JSONExtractString(payload, 'tls', 'verified') = '', 'plaintext', JSONExtractString(payload, 'tls', 'verified')), ''),
    ADD COLUMN IF NOT EXISTS smtp_reply String DEFAULT JSONExtractString(payload, 'smtp_reply'),
    ADD COLUMN IF NOT EXISTS latency_ms Int64 DEFAULT if(JSONExtractString(payload, 'queued_at') = '', -1,
        dateDiff('millisecond', parseDateTime64BestEffort(JSONExtractString(payload, 'queued_at'), 3, 'UTC'), time))
"""),
    (12, """
ALTER TABLE postline.event_ids
    ADD COLUMN IF NOT EXISTS type LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS tags Array(String) DEFAULT [],
    ADD COLUMN IF NOT EXISTS template_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS provider LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS recipient_domain LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS bounce_class LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS source_ip LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS tls LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS smtp_code UInt16 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS smtp_reply String DEFAULT '',
    ADD COLUMN IF NOT EXISTS latency_ms Int64 DEFAULT -1
"""),
    # 13–24: the rollups (hourly, then daily: tables, views, backfill), _insight_steps
    *_INSIGHT_STEPS,
]
