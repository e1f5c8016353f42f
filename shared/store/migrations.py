"""Versioned ClickHouse schema. Tables in database ``postline`` are a public interface
(see docs/analytics.md): add columns and tables, never change the meaning of one.

A step is ``(version, sql)`` or ``(version, sql, only_if)``: ``only_if`` is a query, and the
step runs only when it returns a row (so a step that cannot be repeated, like a rename, is
skipped when a crash came after it ran but before it was recorded)."""

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
]
