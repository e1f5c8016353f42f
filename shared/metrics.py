"""Every Prometheus metric Postline exports, declared in one place."""
from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("postline_relay_deliveries_total", "Delivery attempts by outcome", ["outcome"])
DELIVERY_SECONDS = Histogram("postline_relay_delivery_seconds", "SMTP delivery latency per recipient",
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
# livesum: under `postline all` (PROMETHEUS_MULTIPROC_DIR) the live processes' values add up
RELAY_IN_FLIGHT = Gauge("postline_relay_in_flight", "Messages being delivered now", multiprocess_mode="livesum")
RELAY_QUEUE_DEPTH = Gauge("postline_relay_queue_depth", "Requests polled and not yet committed",
                          multiprocess_mode="livesum")
# per ledger directory (one per relay process): livemin, so a relay that cannot write shows 0
RELAY_LEDGER_WRITABLE = Gauge("postline_relay_ledger_writable",
                              "1 while the relay's delivery ledger can be written; 0 while it takes no work",
                              ["ledger"], multiprocess_mode="livemin")
RELAY_LEDGER_WRITE_ERRORS = Counter("postline_relay_ledger_write_errors_total",
                                    "Failed delivery-ledger writes (disk full, I/O error); each is retried")
DEAD_LETTERS = Counter("postline_dead_letters_total", "Records sent to the dead-letter topic", ["group"])
SENDS_ACCEPTED = Counter("postline_api_sends_total", "Send requests by result", ["result"])
ANALYTICS_ROWS = Counter("postline_analytics_rows_total", "Rows inserted into ClickHouse", ["table"])
ANALYTICS_BATCH_SECONDS = Histogram("postline_analytics_insert_seconds", "ClickHouse batch insert latency")
WEBHOOK_ATTEMPTS = Counter("postline_webhook_attempts_total", "Webhook delivery attempts by result", ["result"])
RELAY_CONTROL_WAITS = Counter("postline_relay_control_waits_total",
                              "Requests that waited for the relay's control state to reach the API's position")
RELAY_HELD = Counter("postline_relay_held_total", "Requests deferred rather than sent unsigned, by reason", ["reason"])
DEPENDENCY_ERRORS = Counter("postline_dependency_errors_total",
                            "Errors while talking to a dependency (each one; the log shows one line per interval)",
                            ["dependency"])
DEPENDENCY_UP = Gauge("postline_dependency_up", "1 when the last call to the dependency succeeded, else 0",
                      ["dependency"])
# Per mailbox provider (docs/analytics.md; deploy/grafana/postline.json). ``provider_label`` keeps the
# label set small: destinations outside the provider table are one "other" series, not one per domain.
DEFERRALS = Counter("postline_relay_deferrals_total", "Deferred delivery attempts by mailbox provider", ["provider"])
DELIVERY_LATENCY = Histogram("postline_delivery_latency_seconds",
                             "Seconds from the API accepting a message to its delivery, by mailbox provider",
                             ["provider"], buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600))


def provider_label(provider: str | None) -> str:
    """The ``provider`` label of a provider name: ``other`` for ``other:<domain>`` and unknown."""
    return "other" if not provider or provider.startswith("other") else provider

# Shaping per mailbox provider (services/relay/shaping/); names fixed by the Grafana dashboard
SHAPING_RATE = Gauge("postline_shaping_rate", "Current messages/s allowed to the provider (after back-off; the "
                     "lowest of its source addresses)",
                     ["provider"], multiprocess_mode="max")  # installation-wide: the same on every relay (max, not sum)
SHAPING_STATE = Gauge("postline_shaping_state", "1 for the provider's current state (normal, backing_off, paused; "
                      "the worst of its source addresses)",
                      ["provider", "state"], multiprocess_mode="max")
SHAPING_QUEUE_DEPTH = Gauge("postline_shaping_queue_depth", "Recipients waiting for the provider's rate or pause",
                            ["provider"], multiprocess_mode="livesum")
SHAPING_CONNECTIONS = Gauge("postline_shaping_connections", "SMTP sessions open to the provider",
                            ["provider"], multiprocess_mode="livesum")
IP_WARMUP_SENT_TODAY = Gauge("postline_ip_warmup_sent_today", "Messages counted against the address's warm-up caps "
                             "today (UTC), every provider, installation-wide", ["ip"], multiprocess_mode="max")
