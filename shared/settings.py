"""The one settings object of a Postline process.

Every field maps to a ``POSTLINE_*`` environment variable (names are part of the
product contract: the README's "Configuration" lists them). A bad value stops the process at start-up with one
clear line (see ``load_settings``).
"""
from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import providers
from shared.retry_schedule import MAX_LEVELS, parse as parse_schedule


MIN_TOKEN_LENGTH, MIN_TOKEN_DISTINCT = 24, 10  # docs/security.md, "The admin token"


def _strong_token(value: str | None) -> str | None:
    """A guessable admin token is refused at start-up (a generated one has 47 characters of
    base62): shorter than ``MIN_TOKEN_LENGTH`` or fewer than ``MIN_TOKEN_DISTINCT`` different
    characters (``aaaa…``, ``abababab…``, ``1234512345…``). Whitespace around it is a paste slip."""
    if value is None or value == "":
        return None
    if value != value.strip() or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must not contain spaces or control characters")
    if len(value) < MIN_TOKEN_LENGTH:
        raise ValueError(f"too short: at least {MIN_TOKEN_LENGTH} characters (got {len(value)}); "
                         "leave it unset to have one generated")
    if len(set(value)) < MIN_TOKEN_DISTINCT:
        raise ValueError(f"too easy to guess: use at least {MIN_TOKEN_DISTINCT} different characters "
                         "(a random token, e.g. `openssl rand -base64 32`)")
    return value


def _host_port(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{name} must be host:port, got {value!r}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTLINE_", extra="ignore")

    data_dir: Path = Field(Path("./.postline"), description="Where embedded state lives (log, chDB, dev inbox, secret key).")
    http_host: str = Field("127.0.0.1", description="Bind address of the API and dashboard.")
    http_port: int = Field(8080, ge=0, lt=65536, description="Port of the API and dashboard.")
    http_header_timeout: float = Field(10.0, gt=0, description="Seconds a client has to send a request's line and headers (then 408).")
    http_body_timeout: float = Field(30.0, gt=0, description="Seconds allowed between two chunks of a request body (then the connection is closed).")
    http_keepalive_timeout: int = Field(5, ge=1, description="Seconds an idle keep-alive connection stays open.")
    http_max_connections: int | None = Field(None, ge=1, description="Open HTTP connections per process; more are answered 503 at once. Default: half the open-files limit.")
    admin_token: str | None = Field(None, description=f"If set, accepted as the admin token of the default workspace: at least {MIN_TOKEN_LENGTH} characters, {MIN_TOKEN_DISTINCT} of them different (else the process does not start).")
    secret_key: str | None = Field(None, description="Master key (urlsafe base64, 32 bytes); generated into the data dir when unset.")
    previous_secret_key: str | None = Field(None, description="Only for `postline rotate-secret-key`: the master key being replaced (default: the data dir's key file).")
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers; when set, Kafka replaces the embedded log.")
    kafka_idempotence: bool = Field(True, description="Idempotent Kafka producer. Only test brokers lacking InitProducerId v3 turn it off.")
    kafka_session_timeout_ms: int = Field(10000, ge=1000, description="Consumer-group session timeout.")
    kafka_partitions: int = Field(4, ge=1, description="Partitions of topics Postline creates itself.")
    kafka_replication: int = Field(1, ge=1, description="Replication factor of topics Postline creates itself (3 on a real cluster).")
    clickhouse_url: str | None = Field(None, description="ClickHouse server URL; when set, replaces embedded chDB.")
    delivery: Literal["inbox", "smarthost", "mx"] = Field("inbox", description="Outbound delivery mode.")
    smarthost: str | None = Field(None, description="host:port of the smarthost (delivery=smarthost).")
    smarthost_user: str | None = Field(None, description="Smarthost login user.")
    smarthost_password: str | None = Field(None, description="Smarthost login password.")
    smarthost_tls: Literal["none", "starttls", "tls"] = Field("none", description="Smarthost transport security.")
    dns_server: str | None = Field(None, description="ip:port of the DNS resolver for verification and MX lookups.")
    sandbox_from: str = Field("sandbox@postline.localhost", description="The platform's sandbox sender address.")
    webhook_allow_private: bool = Field(False, description="Let webhook URLs, remote attachments (`path`) and MTA-STS policy hosts point at loopback/private addresses (dev and tests).")
    attachment_fetch_timeout: float = Field(10.0, gt=0, le=120, description="Seconds the API waits for the remote attachments (`path`) of one send, all together; then 422.")
    inbound_smtp_port: int = Field(2525, ge=0, lt=65536, description="Inbound listener: bounces, complaints, and mail to receiving domains (docs/receiving.md).")
    inbound_max_message_bytes: int = Field(20 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="Largest message the inbound listener takes (SIZE; larger: 552 5.3.4).")
    inbound_rate_per_minute: int = Field(120, ge=1, description="Messages per minute the inbound listener takes from one sending IP address (more: 451 4.7.1, try later).")
    receiving_link_ttl: int = Field(3600, ge=60, le=7 * 86400, description="Seconds a received attachment's signed download URL stays valid.")
    submission_port: int = Field(1587, ge=0, lt=65536, description="SMTP submission listener of the api role (STARTTLS + AUTH with an API key); 0 turns it off.")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) of the submission listener; when unset, one issued by a local CA made once in the data dir (services/api/submission/local_ca.py).")
    tls_key: Path | None = Field(None, description="PEM private key matching POSTLINE_TLS_CERT.")
    public_url: str | None = Field(None, description="Base URL for tracking, unsubscribe and verification links.")
    hostname: str = Field("postline.localhost", description="Public host name of this installation: HELO name, MX target of bounce domains.")
    spf_include: str | None = Field(None, description="Domain senders include in SPF (default _spf.<hostname>).")
    oidc_issuer: str | None = Field(None, description="OpenID Connect issuer URL for dashboard single sign-on (discovery at <issuer>/.well-known/openid-configuration); unset: no SSO.")
    oidc_client_id: str | None = Field(None, description="Client id of Postline at the OpenID Connect provider.")
    oidc_client_secret: str | None = Field(None, description="Client secret of Postline at the OpenID Connect provider.")
    oidc_allowed_domains: str = Field("", description="Comma-separated email domains that may sign in with OpenID Connect (a first sign-in creates a viewer); empty: only addresses already invited.")
    rate_per_minute: int = Field(600, ge=1, description="Base production limit per service per minute (reputation raises it).")
    rate_per_day: int = Field(10_000, ge=1, description="Base production limit per service per day (reputation raises it).")
    quota_flush_interval: float = Field(0.1, gt=0, le=5, description="Kafka mode: seconds between an API replica's publications of its rate counts to the others (the total can overshoot by about this much traffic).")
    auth_free_failures: int = Field(10, ge=1, le=1_000_000, description="Failed credentials (sign-ins, admin tokens, API keys, SMTP AUTH) an address may make within an hour before it is blocked for 1 s, 2 s, 4 s … at most 15 min; an account may make twice as many within 15 min (docs/security.md).")
    workers: int | None = Field(None, ge=1, le=256, description="API processes of `postline all` (default: the number of cores); 1 runs every role in one process.")
    relay_processes: int | None = Field(None, ge=1, le=64, description="Relay processes of `postline all`, each delivering its share of the embedded log's partitions (default: the number of cores, at most POSTLINE_EMBEDDED_PARTITIONS).")
    mx_port: int = Field(25, ge=1, lt=65536, description="Port of receiving MX servers (25; tests point it at sinks).")
    mx_concurrency: int = Field(8, ge=1, le=256, description="Connections at once to a destination without a provider entry (`other:<domain>`), for the whole installation (docs/delivery.md, Shaping).")
    outbound_ca_file: Path | None = Field(None, description="PEM bundle of the CAs the relay trusts for receiving servers' certificates where TLS is verified (MTA-STS enforce, require_tls) and for MTA-STS policy hosts; replaces the system store (a private CA, tests). Default: the system store.")
    mta_sts_port: int = Field(443, ge=1, lt=65536, description="HTTPS port MTA-STS policies are fetched from (443; tests point it at a local server).")
    mx_rate: float = Field(50.0, gt=0, description="Messages per second to a destination without a provider entry (`other:<domain>`), for the whole installation (docs/delivery.md, Shaping).")
    shaping_pause: float = Field(30.0, gt=0, le=3600, description="Seconds a provider pauses after a throttling reply (421, 4.7.x) before its halved rate applies.")
    shaping_recovery: float = Field(60.0, gt=0, le=86400, description="Clean seconds (no throttling reply) after which a backed-off provider's rate grows one step (a quarter of its configured rate).")
    shaping_hold: float = Field(0.0, ge=0, le=3600, description="Seconds a throttled message (or one over its IP's warm-up cap) may wait inside the relay for its provider before it is deferred to the retry schedule (0: deferred at once, a `deferred` event, retried after the pause).")
    shaping_block_spike: int = Field(10, ge=1, le=10000, description="5.7.x policy blocks from one provider within a minute that pause it and raise a `provider_paused` alert.")
    shaping_block_pause: float = Field(900.0, gt=0, le=86400, description="Seconds a provider pauses after a spike of policy blocks.")
    providers: str = Field("", description="Extra or replaced mailbox providers for shaping and stats: `name=mx-suffix,mx-suffix;name=…` (shared/providers.py has the built-in table).")
    webhook_retry_schedule: str = Field("5,300,1800,7200,18000,36000,36000",
                                        description="Seconds between webhook retries (~27 h in all by default).")
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds a webhook endpoint has to answer.")
    log_level: str = Field("INFO", description="Logging level.")
    embedded_partitions: int = Field(4, ge=1, le=64, description="Partitions per topic of the embedded log.")
    relay_concurrency: int = Field(64, ge=1, le=1024, description="Messages a relay process delivers at once (64: measured faster than 32 with dual DKIM on 2 cores).")
    relay_crashes_per_request: int = Field(2, ge=2, le=1000, description="Deaths of its relay process with a request in hand after which the relay gives the request up (email.failed, dead-lettered), so one message that crashes the process cannot stop the others: the first is counted while it is handled in a batch, the others while it is handled alone, so at least 2 (services/relay/crash_guard.py).")
    retry_schedule: str = Field("60,300,900,3600,10800,21600", description="Seconds between delivery retries, comma-separated; the last repeats.")
    queue_lifetime: int = Field(72 * 3600, ge=1, description="Seconds a deferred message keeps being retried before it fails.")
    log_append_timeout: float = Field(5.0, gt=0, le=60, description="Seconds an append to the event log may take before it fails (the API then answers 503 with Retry-After).")
    idempotency_lease: float = Field(15.0, ge=1, le=600, description="Seconds a request holding an Idempotency-Key is trusted to finish (more than POSTLINE_LOG_APPEND_TIMEOUT): duplicates wait for its answer; after this one of them may take over, if it died.")
    control_catch_up_timeout: float = Field(3.0, gt=0, le=60, description="Seconds a request that reads management state (services, keys, domains, …) may wait for its API process to read the control log up to its end (read-your-writes across processes); then 503 with Retry-After.")
    control_wait_timeout: float = Field(10.0, ge=0, le=300, description="Seconds a relay waits for its control state to reach the position a send request was decided on; then the message is deferred, never sent unsigned.")
    dependency_log_interval: float = Field(30.0, gt=0, description="Seconds between two log lines about the same unavailable dependency (the errors in between are counted in a metric).")
    log_retention_requests: int = Field(7 * 86400, ge=1, description="Embedded log: seconds `email.requests` and `email.retry.*` records are kept (at least POSTLINE_QUEUE_LIFETIME).")
    log_retention_events: int = Field(30 * 86400, ge=1, description="Embedded log: seconds `email.events` records are kept (ClickHouse keeps the history).")
    log_retention_dead_letter: int = Field(30 * 86400, ge=1, description="Embedded log: seconds `postline.dead-letter` records are kept.")
    log_retention_interval: float = Field(300.0, gt=0, description="Embedded log: seconds between retention and compaction runs.")
    alert_interval: float = Field(60.0, gt=0, le=3600, description="Seconds between two evaluations of the services' bounce and complaint rates against their alert thresholds (the analytics role; docs/analytics.md).")
    ledger_clock_margin: int = Field(300, ge=0, description="Seconds further back than the oldest unfinished request a relay reads outcomes when it rebuilds a partition's delivery ledger (covers clock skew between the hosts that append requests and outcomes).")

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, v: str | None) -> str | None:
        return _strong_token(v)

    @field_validator("smarthost")
    @classmethod
    def _check_smarthost(cls, v: str | None) -> str | None:
        return _host_port(v, "POSTLINE_SMARTHOST")

    @field_validator("dns_server")
    @classmethod
    def _check_dns(cls, v: str | None) -> str | None:
        return _host_port(v, "POSTLINE_DNS_SERVER")

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, v: str) -> str:
        providers.parse_setting(v)
        return v

    @field_validator("retry_schedule", "webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, v: str, info: ValidationInfo) -> str:
        """Only the delivery schedule is bound to the delay topics' number of levels."""
        bound = MAX_LEVELS if info.field_name == "retry_schedule" else None
        try:
            parse_schedule(v, bound)
        except ValueError as exc:
            raise ValueError(f"POSTLINE_{str(info.field_name).upper()} {exc}") from None
        return v

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("POSTLINE_TLS_CERT and POSTLINE_TLS_KEY must be set together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("POSTLINE_OIDC_ISSUER needs POSTLINE_OIDC_CLIENT_ID and POSTLINE_OIDC_CLIENT_SECRET")
        return self

    @model_validator(mode="after")
    def _check_retention(self) -> Settings:
        # a deferred message is retried from its requests/retry record: dropping it sooner
        # would lose mail that is still within its queue lifetime
        if self.log_retention_requests < self.queue_lifetime:
            raise ValueError("POSTLINE_LOG_RETENTION_REQUESTS must be at least POSTLINE_QUEUE_LIFETIME")
        return self

    @model_validator(mode="after")
    def _check_lease(self) -> Settings:
        # a lease shorter than an append would let a duplicate take over a request still appending
        if self.idempotency_lease <= self.log_append_timeout:
            raise ValueError("POSTLINE_IDEMPOTENCY_LEASE must be more than POSTLINE_LOG_APPEND_TIMEOUT")
        return self

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def spf_domain(self) -> str:
        return self.spf_include or f"_spf.{self.hostname}"

    @cached_property
    def provider_table(self) -> list[tuple[str, str]]:
        """The ``(mx suffix, provider)`` table: built-in plus ``POSTLINE_PROVIDERS``."""
        return providers.suffix_table(providers.parse_setting(self.providers))

    @property
    def retry_delays(self) -> list[float]:
        return parse_schedule(self.retry_schedule)

    @property
    def webhook_delays(self) -> list[float]:
        return parse_schedule(self.webhook_retry_schedule, None)

    @cached_property
    def master_key(self) -> bytes:
        """The 32-byte master key: from POSTLINE_SECRET_KEY, else generated once into the data dir."""
        from shared.crypto import load_or_create_master_key

        return load_or_create_master_key(self.secret_key, self.data_dir)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; on a bad value print one line and exit(2)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "POSTLINE_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
        print(f"postline: bad setting {field}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None
