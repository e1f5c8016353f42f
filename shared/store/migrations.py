"""Versioned ClickHouse schema. Tables in database ``postline`` are a public interface
(see docs/analytics.md): add columns and tables, never change the meaning of one."""

MIGRATIONS: list[tuple[int, str]] = [
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
]
