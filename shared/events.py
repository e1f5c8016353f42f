"""Event schemas: one frozen pydantic class per event type, versioned.

Every event is an ``Envelope``-shaped record: ``id`` (unique, consumers deduplicate on
it), ``type``, ``v`` (schema version), ``time``, ``workspace_id``, ``service_id`` and the
type's own fields. ``decode`` upcasts old versions to the current one on read.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.addresses import split_bare


class Topic(StrEnum):
    """Every topic Postline uses. ``CONTROL`` is compacted (latest state per key)."""

    CONTROL = "postline.control"
    REQUESTS = "email.requests"
    EVENTS = "email.events"
    RETRY = "email.retry"
    DEAD_LETTER = "postline.dead-letter"
    QUOTA = "postline.quota"  # Kafka mode: each API replica's rate counts (shared/quota/gossip.py)
    IDEMPOTENCY = "postline.idempotency"  # Kafka mode: Idempotency-Key claims (services/api/idempotency/)
    SHAPING = "postline.shaping"  # Kafka mode: each relay's shaping state (services/relay/shaping/gossip.py)


_EVENT_NS = uuid.UUID("6f1d3c4e-2b1a-4f8e-9c51-7d0b8f3a9e20")


def new_id() -> str:
    return str(uuid.uuid4())


def derived_id(*parts: object) -> str:
    """A deterministic event id: re-processing the same input yields the same id, so
    consumers deduplicate what an at-least-once redelivery emits twice.

    It is ``uuid5(_EVENT_NS, "|".join(parts))``, computed without the ``uuid`` module's
    object overhead (the relay makes two per message)."""
    b = bytearray(hashlib.sha1(_EVENT_NS.bytes + "|".join(map(str, parts)).encode()).digest()[:16])
    b[6], b[8] = (b[6] & 0x0F) | 0x50, (b[8] & 0x3F) | 0x80  # version 5, RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def retry_topic(level: int) -> str:
    """Delay topic of one retry level: every record on it waits the same delay."""
    return f"{Topic.RETRY}.{level}"



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(default_factory=new_id)
    v: int = 1
    time: datetime = Field(default_factory=utcnow)
    workspace_id: str
    service_id: str | None = None


# ---------------------------------------------------------------- control plane
# Each control event carries the entity's whole state, keyed by entity, so the compacted
# topic keeps the latest state per entity. A change of an existing entity also says which
# fields it sets and which version of the entity it was decided on, so that applying it
# never reverts a field it did not touch (shared/control/state.py has the rules).

class ControlRecord(Event):
    """What every control event has besides the entity's state. All optional: events written
    before these fields existed read as whole-state records (``changed`` None)."""

    # None: the record is the entity's whole state (a create, or an older writer). A list: the
    # fields this change sets (the rest of the record is the writer's view, not a change);
    # an empty list: a record that changes nothing and restates the state (an anchor).
    changed: list[str] | None = None
    # The log offset of the entity's record the change was decided on (its writer's view).
    based_on: int | None = None
    # Offsets at which fields were last set by a change, as the writer saw them ("*": the last
    # whole-state record): lets a replay that starts at this record (after compaction) decide
    # later conflicts exactly as a replay of the whole history does.
    versions: dict[str, int] = Field(default_factory=dict)
    if TYPE_CHECKING:  # every entity type declares it (a field here would change the records' field order)
        deleted: bool


CONTROL_META = frozenset({"id", "v", "time", "changed", "based_on", "versions"})  # not the entity's state

class WorkspaceSaved(ControlRecord):
    type: Literal["workspace.saved"] = "workspace.saved"
    name: str
    token_hash: str
    deleted: bool = False


class ServiceSaved(ControlRecord):
    type: Literal["service.saved"] = "service.saved"
    service_id: str  # every entity but a workspace belongs to a service
    name: str
    mode: Literal["sandbox", "production"] = "sandbox"
    status: Literal["active", "disabled"] = "active"
    track_opens: bool = False
    track_clicks: bool = False
    rate_per_minute: int | None = None  # the admin's override of the base limits; None = the global base
    rate_per_day: int | None = None
    list_unsubscribe: bool = False  # RFC 8058 one-click List-Unsubscribe headers by default
    created_at: datetime
    deleted: bool = False
    receiving_retention_days: int = 30  # how long received mail is kept (docs/receiving.md)
    ip_pool_id: str | None = None  # the source IP pool its mail leaves from (docs/delivery.md); None: the host's default
    require_tls: bool = False  # deliver only over certificate-verified TLS, else defer (docs/delivery.md)
    # Alert thresholds over the last 24 h (services/analytics/alerts.py): bounced /
    # (delivered + bounced) and complained / delivered, once delivered + bounced reaches the minimum.
    alert_bounce_rate: float = 0.04
    alert_complaint_rate: float = 0.001
    alert_min_volume: int = 100


class ApiKeySaved(ControlRecord):
    type: Literal["api_key.saved"] = "api_key.saved"
    service_id: str  # every entity but a workspace belongs to a service
    key_id: str
    name: str
    key_hash: str
    prefix: str
    created_at: datetime
    # Resend's key scopes: a sending key only sends (what every key was before scopes); a
    # full-access key also manages its own service through Resend's paths. ``domain_id``
    # limits a sending key to From addresses of that domain.
    permission: Literal["full_access", "sending_access"] = "sending_access"
    domain_id: str | None = None
    deleted: bool = False


class DomainSaved(ControlRecord):
    type: Literal["domain.saved"] = "domain.saved"
    service_id: str  # every entity but a workspace belongs to a service
    domain_id: str
    domain: str
    rsa_selector: str
    rsa_private_sealed: str
    rsa_public_b64: str
    ed_selector: str
    ed_private_sealed: str
    ed_public_b64: str
    verified: bool = False
    verified_at: datetime | None = None
    last_check: dict[str, Any] | None = None
    tracking_host: str | None = None  # the domain's own host for tracking links (a CNAME to this installation)
    created_at: datetime
    deleted: bool = False
    receiving: bool = False  # mail to any address at the domain is received (docs/receiving.md)
    # DKIM rotation (docs/delivery.md): the next key set (shared.dkim_keys.generate's fields,
    # private halves sealed) published and awaiting DNS; signing moves to it once verification
    # finds both its records. The replaced set's public half stays listed until ``retiring_until``.
    pending_dkim: dict[str, str] | None = None
    retiring_dkim: dict[str, str] | None = None  # rsa_selector, rsa_public_b64, ed_selector, ed_public_b64
    retiring_until: datetime | None = None
    dkim_rotation_days: int | None = None  # scheduled rotation: a new set when the current one is this old
    dkim_rotated_at: datetime | None = None  # when the current set took over (None: since created_at)
    return_path: str | None = None  # the bounce subdomain's label(s): "em" → em.<domain>; None: "bounces"

    @property
    def bounce_domain(self) -> str:
        """The return-path domain of the domain's mail: VERP MAIL FROM and unsubscribe mailto."""
        return f"{self.return_path or 'bounces'}.{self.domain}"


class SandboxRecipientSaved(ControlRecord):
    type: Literal["sandbox_recipient.saved"] = "sandbox_recipient.saved"
    service_id: str  # every entity but a workspace belongs to a service
    recipient_id: str
    email: str
    verified: bool = False
    token_hash: str | None = None
    token_expires_at: datetime | None = None
    created_at: datetime
    verified_at: datetime | None = None
    deleted: bool = False


class SuppressionSaved(ControlRecord):
    """A recipient a service never sends to again (until removed)."""

    type: Literal["suppression.saved"] = "suppression.saved"
    service_id: str  # every entity but a workspace belongs to a service
    email: str
    reason: Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe", "manual"]
    detail: str | None = None
    source_email_id: str | None = None
    created_at: datetime
    deleted: bool = False


class WebhookSaved(ControlRecord):
    """A webhook endpoint. Secrets are sealed (AES-GCM); during a rotation the previous
    secret keeps signing too until ``previous_until``."""

    type: Literal["webhook.saved"] = "webhook.saved"
    service_id: str  # every entity but a workspace belongs to a service
    webhook_id: str
    url: str
    events: list[str]
    secret_sealed: str
    previous_secret_sealed: str | None = None
    previous_until: datetime | None = None
    status: Literal["enabled", "disabled"] = "enabled"
    disabled_reason: str | None = None
    consecutive_failures: int = 0
    created_at: datetime
    deleted: bool = False


# ---------------------------------------------------------------- people and access (docs/people-and-access.md)

Role = Literal["owner", "admin", "developer", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)
"""Dashboard roles, most powerful first (services/api/access.py says what each may do)."""


class UserSaved(ControlRecord):
    """A dashboard user of a workspace: invited (a 72 h link), then active with a password
    (argon2id) and optional TOTP, or through OpenID Connect. Secrets are stored hashed
    (password, invitation token, recovery codes) or sealed (the TOTP secret)."""

    type: Literal["user.saved"] = "user.saved"
    user_id: str  # derived from (workspace, email): one record per address and workspace
    email: str
    role: Role = "viewer"
    status: Literal["invited", "active"] = "invited"
    password_hash: str | None = None
    invite_token_hash: str | None = None
    invite_expires_at: datetime | None = None
    invited_by: str | None = None
    totp_sealed: str | None = None  # the confirmed TOTP secret; None: no second factor
    totp_pending_sealed: str | None = None  # shown to the user, not confirmed with a code yet
    totp_last_step: int = 0  # the last time step accepted (a code works once)
    recovery_hashes: list[str] = Field(default_factory=list)  # unused recovery codes, hashed
    oidc_subject: str | None = None  # ``iss`` + ``sub`` of the identity it signed in with
    created_at: datetime
    deleted: bool = False


class SessionSaved(ControlRecord):
    """A dashboard session. The cookie holds ``session_id`` and a secret whose hash is
    stored here; deleting the record ends the session on every process."""

    type: Literal["session.saved"] = "session.saved"
    session_id: str
    user_id: str | None = None  # None: signed in with the workspace admin token
    token_prefix: str | None = None  # admin-token sessions: the token's hash prefix (a re-key ends them)
    secret_hash: str
    method: Literal["admin_token", "password", "oidc"]
    source: str | None = None  # the client address it was opened from
    user_agent: str | None = None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # absolute end, whatever the activity
    deleted: bool = False


class UserTokenSaved(ControlRecord):
    """A user's personal API token for the management API (``pl_usr_…``, shown once)."""

    type: Literal["user_token.saved"] = "user_token.saved"
    token_id: str
    user_id: str
    name: str
    token_hash: str
    prefix: str
    created_at: datetime
    deleted: bool = False


class ReceivingRuleSaved(ControlRecord):
    """A routing rule for received mail (docs/receiving.md): mail to an address matching
    ``pattern`` goes to ``webhook_ids`` (None: every webhook subscribed to
    ``email.received``) and is forwarded to ``forward_to``."""

    type: Literal["receiving_rule.saved"] = "receiving_rule.saved"
    service_id: str  # every entity but a workspace belongs to a service
    rule_id: str
    pattern: str  # a lower-case address glob: help@acme.com, *@acme.com, support+*@acme.com
    webhook_ids: list[str] | None = None
    forward_to: list[str] = Field(default_factory=list)
    created_at: datetime
    deleted: bool = False


class TemplateVariable(BaseModel):
    """A variable a template declares (Resend's shape): used as ``{{{KEY}}}``; without a
    ``fallback_value`` a send must give it."""

    model_config = ConfigDict(frozen=True)
    key: str
    type: Literal["string", "number"] = "string"
    fallback_value: str | int | float | None = None


class TemplateContent(BaseModel):
    """What a template says: its draft, and each published version (docs/templates.md)."""

    model_config = ConfigDict(frozen=True)
    sender: str | None = None  # Resend's ``from``
    subject: str | None = None
    reply_to: list[str] = Field(default_factory=list)
    html: str = ""
    text: str | None = None  # None: derived from the HTML, as for any send
    variables: list[TemplateVariable] = Field(default_factory=list)


class TemplateSaved(ControlRecord):
    """A stored template: its name, alias and draft (the fields edits change, one by one, so
    two editors of different fields both win), and which published version sends use.
    Published versions are records of their own (``TemplateVersionSaved``), so this record
    stays one draft's size however long the history."""

    type: Literal["template.saved"] = "template.saved"
    service_id: str  # every entity but a workspace belongs to a service
    template_id: str
    name: str
    alias: str | None = None
    draft: TemplateContent = TemplateContent()
    published_version_id: str | None = None
    published_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    deleted: bool = False


class TemplateVersionSaved(ControlRecord):
    """One published version of a template, never changed afterwards (deleted with it)."""

    type: Literal["template_version.saved"] = "template_version.saved"
    service_id: str  # every entity but a workspace belongs to a service
    template_id: str
    version_id: str
    number: int  # 1, 2, … in publishing order
    content: TemplateContent
    created_at: datetime
    deleted: bool = False


class ProviderLimits(BaseModel):
    """One mailbox provider's limits, for the whole installation (services/relay/shaping/)."""
    max_connections: int = Field(ge=1, le=1000)  # SMTP sessions open at once
    rate: float = Field(gt=0, le=10000)  # messages per second
    per_connection: int = Field(ge=1, le=10000)  # messages over one session before it is closed


class ShapingSaved(ControlRecord):
    """The operator's provider limits (``PUT /api/email/shaping``): one record for the
    installation, keyed ``shaping:installation``; ``workspace_id`` names who saved it."""
    type: Literal["shaping.saved"] = "shaping.saved"
    providers: dict[str, ProviderLimits] = Field(default_factory=dict)  # provider name (or "other") → limits; absent: built-in
    deleted: bool = False


class PoolAddress(BaseModel):
    """One local source address of an IP pool, with the name it greets receivers with."""
    ip: str  # IPv4 or IPv6, as written by ipaddress
    ehlo_name: str
    added_at: datetime  # its warm-up starts that day (UTC)
    warm: bool = False  # True: an address with a reputation already; no warm-up caps


class IpPoolSaved(ControlRecord):
    """A pool of local source addresses (``/api/email/ip-pools``), installation-wide like the
    shaping limits; ``workspace_id`` names who created it. ``warmup_schedule[d]``: each
    provider's daily cap for a new address on its day ``d + 1``; after the last day, none."""
    type: Literal["ip_pool.saved"] = "ip_pool.saved"
    pool_id: str
    name: str
    addresses: list[PoolAddress] = Field(default_factory=list)
    warmup_schedule: list[int] = Field(default_factory=list)
    created_at: datetime
    deleted: bool = False


ControlEvent = Annotated[
    Union[WorkspaceSaved, ServiceSaved, ApiKeySaved, DomainSaved, SandboxRecipientSaved, SuppressionSaved,
          WebhookSaved, UserSaved, SessionSaved, UserTokenSaved, ReceivingRuleSaved, TemplateSaved, TemplateVersionSaved,
          ShapingSaved, IpPoolSaved],
    Field(discriminator="type"),
]


class AuditEntry(Event):
    """Who changed what (shared/audit.py; docs/security.md, "Audit log"). On the control
    topic under its own key (``audit:<id>``): never compacted away, never rewritten. Not an
    entity: the control state keeps the newest entries in a bounded index for reading.
    ``before``/``after`` hold the fields that changed (the whole state for a create or a
    delete), every secret-bearing field redacted."""

    type: Literal["audit.entry"] = "audit.entry"
    actor_type: str   # "admin_token" (its hash's first 12 hex digits as id), "api_key" (key id), "user" (user id),
    #                   "cli" (the operating-system user and the command)
    actor_id: str
    action: str       # "<target_type>.created" | ".updated" | ".deleted"
    target_type: str  # "service", "api_key", "domain", "webhook", "sandbox_recipient", "suppression", "workspace"
    target_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: str | None = None      # the client's address
    request_id: str | None = None  # the X-Request-Id of the request that made the change


# ---------------------------------------------------------------- send requests

class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)
    filename: str
    content_base64: str
    content_type: str = "application/octet-stream"
    content_id: str | None = None  # an inline part the HTML shows as cid:<content_id>


class DroppedRecipient(BaseModel):
    model_config = ConfigDict(frozen=True)
    recipient: str
    reason: Literal["sandbox", "suppressed", "sandbox_cap"]


class SendRequested(Event):
    """A message accepted by the API; the relay delivers it to ``recipients``."""

    type: Literal["send-requested"] = "send-requested"
    service_id: str
    email_id: str
    mode: Literal["production", "sandbox", "sandbox_fallback"]
    from_: str = Field(alias="from")
    sending_domain: str | None = None  # verified domain of the service the From is on; None → sandbox sender
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    reply_to: list[str] = Field(default_factory=list)
    subject: str = ""
    html: str | None = None
    text: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    recipients: list[str]  # envelope recipients to deliver to (after sandbox/suppression drops)
    dropped: list[DroppedRecipient] = Field(default_factory=list)
    # SMTP submission: the client's message (base64 of its bytes, Bcc and X-Postline-* removed,
    # Message-ID/Date added), sent as is instead of a MIME built from the fields above.
    raw_mime: str | None = None
    scheduled_at: datetime | None = None
    attempt: int = 0
    first_attempt_at: datetime | None = None
    # Effective tracking of this message (service default or the send's override), decided
    # by the API so the relay needs no lookup; all False → the message is built as untracked.
    track_opens: bool = False
    track_clicks: bool = False
    list_unsubscribe: bool = False
    # The control-log position the API decided on (partition → offset after the last record it
    # had read or written); a relay whose control state is behind it waits before sending.
    control_position: dict[int, int] = Field(default_factory=dict)
    # The stored template the message was rendered from (its id; None: not from a template).
    # The bodies above are already rendered: a later edit of the template changes nothing here.
    template_id: str | None = None
    # Deliver only over certificate-verified TLS (the service's setting or the send's
    # ``require_tls``), decided by the API like tracking.
    require_tls: bool = False

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class SendCanceled(Event):
    """Cancel a scheduled send (``POST /emails/{id}/cancel``). On ``email.requests`` keyed
    by the email id, so it reaches the relay that holds the request, after the request."""

    type: Literal["send-cancelled"] = "send-cancelled"  # spelled as the records on the log already are
    email_id: str


class SendRescheduled(Event):
    """Move a scheduled send (``PATCH /emails/{id}``); on ``email.requests`` like
    ``SendCanceled``."""

    type: Literal["send-rescheduled"] = "send-rescheduled"
    email_id: str
    scheduled_at: datetime


# ---------------------------------------------------------------- lifecycle events

class _Lifecycle(Event):
    email_id: str
    recipient: str | None = None
    from_: str | None = Field(None, alias="from")
    subject: str | None = None
    tags: list[str] = Field(default_factory=list)
    template_id: str | None = None  # the stored template the message was rendered from

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Sent(_Lifecycle):
    type: Literal["sent"] = "sent"


class TlsUsed(BaseModel):
    """The TLS of the SMTP session that delivered a message (docs/delivery.md).
    ``verified``: what vouched for the server's certificate — ``none`` (opportunistic
    STARTTLS, not checked), ``pkix`` (a public CA and the MX name), ``mta-sts`` (PKIX, to an
    MX the domain's MTA-STS policy lists), ``dane`` (the MX's authenticated TLSA records)."""

    model_config = ConfigDict(frozen=True)
    version: str | None = None  # "TLSv1.3"
    cipher: str | None = None
    verified: Literal["none", "pkix", "mta-sts", "dane"] = "none"


class _Attempted(_Lifecycle):
    """An outcome of talking to the destination: where it went, from which source address.
    ``provider``: the mailbox provider of the destination (shared/providers.py), what
    shaping and stats group by; None on events from before it."""

    smtp_code: int | None = None
    smtp_reply: str | None = None
    mx_host: str | None = None
    provider: str | None = None
    source_ip: str | None = None  # the local address the connection left from (IP pools)
    queued_at: datetime | None = None  # when the API accepted the message: queued→outcome latency (None before it)


class Delivered(_Attempted):
    type: Literal["delivered"] = "delivered"
    tls: TlsUsed | None = None  # None: the session had no TLS


class Deferred(_Attempted):
    type: Literal["deferred"] = "deferred"
    attempt: int = 1
    retry_at: datetime | None = None


class Bounced(_Attempted):
    type: Literal["bounced"] = "bounced"
    bounce_type: Literal["hard", "soft"] = "hard"
    bounce_class: str | None = None  # why (services/relay/bounce_class.py); None on events from before it


class Failed(_Lifecycle):
    type: Literal["failed"] = "failed"
    reason: str
    smtp_code: int | None = None
    smtp_reply: str | None = None


class Dropped(_Lifecycle):
    type: Literal["dropped"] = "dropped"
    reason: Literal["sandbox", "suppressed", "sandbox_cap"]


class Complained(_Lifecycle):
    type: Literal["complained"] = "complained"
    feedback_type: str | None = None


class Opened(_Lifecycle):
    type: Literal["opened"] = "opened"
    user_agent: str | None = None
    machine: bool = False  # a known proxy or prefetcher fetched the pixel (docs/tracking.md)


class Clicked(_Lifecycle):
    type: Literal["clicked"] = "clicked"
    url: str
    user_agent: str | None = None
    machine: bool = False  # a known link scanner or prefetcher followed the link (docs/tracking.md)


class Unsubscribed(_Lifecycle):
    """The recipient used the List-Unsubscribe link (RFC 8058 one-click POST)."""

    type: Literal["unsubscribed"] = "unsubscribed"
    user_agent: str | None = None


class Scheduled(_Lifecycle):
    """The relay holds the message until ``scheduled_at`` (emitted again when rescheduled)."""

    type: Literal["scheduled"] = "scheduled"
    scheduled_at: datetime


class Canceled(_Lifecycle):
    """A scheduled message was canceled before it was due: it will not be sent."""

    type: Literal["canceled"] = "canceled"


# ---------------------------------------------------------------- received mail

class ReceivedAttachment(BaseModel):
    """An attachment of a received message: what the event and the API list (its bytes are
    in the store, shared/store/received.py)."""

    model_config = ConfigDict(frozen=True)
    id: str
    filename: str | None = None
    content_type: str = "application/octet-stream"
    content_id: str | None = None
    content_disposition: Literal["inline", "attachment"] = "attachment"
    size: int = 0


class EmailReceived(Event):
    """Mail to a receiving domain of the service was accepted and stored (Resend's
    ``email.received``). Carries references, never bodies: the message and its attachments
    are in the store under ``email_id`` (docs/receiving.md)."""

    type: Literal["email.received"] = "email.received"
    service_id: str
    email_id: str
    from_: str = Field(alias="from")
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    received_for: list[str] = Field(default_factory=list)  # the envelope recipients at the service's receiving domains
    subject: str = ""
    message_id: str | None = None
    attachments: list[ReceivedAttachment] = Field(default_factory=list)
    size: int = 0
    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    # The routing rules' decision (docs/receiving.md): the webhooks that get this event (None:
    # every webhook subscribed to it) and the forwards sent (their email ids).
    webhook_ids: list[str] | None = None
    forwards: list[str] = Field(default_factory=list)

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Alert(Event):
    """Something about a service's sending needs a person (docs/delivery.md, docs/analytics.md): a rate over its
    threshold (``bounce_rate``, ``complaint_rate``), a provider paused after policy blocks
    (``provider_paused``), … ``state`` ``raised`` once when it starts and ``cleared`` once
    when it ends — never one per event. Webhook-able; in the service's timeline.
    ``email_id`` is the alert's own key (``alert_key``), so an alert raised twice by two
    processes is one row."""

    type: Literal["alert"] = "alert"
    email_id: str
    kind: str
    state: Literal["raised", "cleared"] = "raised"
    provider: str | None = None
    value: float | None = None  # the measured rate (0–1) or count
    threshold: float | None = None
    message: str = ""


def alert_key(service_id: str, kind: str, provider: str | None, since: datetime) -> str:
    """The id of one alert episode: the same inputs from any process give the same id."""
    return derived_id("alert", service_id, kind, provider or "", since.isoformat())


ALERT_TYPES = ("alert",)
"""Events that ask for a person's attention (``Alert``)."""

RECEIVED_TYPES = ("email.received",)
"""Events about received mail (docs/receiving.md): webhooks and analytics take them as they
take lifecycle events, keyed by the received email's id."""


LifecycleEvent = Annotated[
    Union[Sent, Delivered, Deferred, Bounced, Failed, Dropped, Complained, Opened, Clicked, Unsubscribed, Scheduled, Canceled],
    Field(discriminator="type"),
]

# ---------------------------------------------------------------- the vocabulary
# What the services say about lifecycle events — which types end a delivery, which fields
# every event repeats, how a recipient is numbered — said once, here. One spelling:
# "canceled" (Resend's ``last_event``); only the ``send-cancelled`` record type and the
# relay's ``cancelled`` table keep two l's, because records and relays already hold them.

LIFECYCLE_TYPES = ("sent", "delivered", "deferred", "bounced", "failed", "dropped", "complained", "opened", "clicked",
                   "unsubscribed", "scheduled", "canceled")
"""Every lifecycle event type, in the order webhooks and the dashboard offer them."""

WEBHOOK_TYPES = LIFECYCLE_TYPES + RECEIVED_TYPES + ALERT_TYPES
"""What a webhook endpoint can subscribe to."""

FINAL_TYPES = ("delivered", "bounced", "failed")
"""A recipient's delivery is over: the relay's ledger records these outcomes, and a
recipient with one is never sent to again (services/relay/ledger.py)."""

HELD_TYPES = ("scheduled", "canceled")
"""What the relay says of a scheduled message it holds (or dropped) before it is due."""

RELEASED_TYPES = ("sent", "delivered", "bounced", "complained", "dropped", "deferred", "failed", "opened", "clicked",
                  "unsubscribed")
"""Every other lifecycle type: a message with one of them went out (too late to cancel or
reschedule). Also what ``stats`` counts, in this order (its totals and the dashboard's
chart list them so)."""

TRACKING_TYPES = ("opened", "clicked", "unsubscribed")
"""Emitted by the public endpoints from a signed token alone (docs/tracking.md): they carry
no ``from``/``subject``/``tags`` until analytics fills them in, and are counted by distinct
event id and distinct (email, recipient)."""

MessageStatus = Literal["queued", "sent", "delivered", "deferred", "bounced", "failed", "dropped", "complained"]
MESSAGE_STATUSES: tuple[str, ...] = get_args(MessageStatus)
"""A message's status in the message log: the type of its latest delivery event (one of
``DELIVERY_TYPES``), ``queued`` before it has any."""
DELIVERY_TYPES = MESSAGE_STATUSES[1:]
"""The lifecycle types that set a message's status (tracking and held events do not)."""

LIFECYCLE_FIELDS = ("workspace_id", "service_id", "email_id", "from", "subject", "tags", "template_id")
"""The message's fields every lifecycle event repeats (besides ``id``, ``v``, ``type``,
``time`` and its ``recipient``), so a webhook or a row needs no lookup."""


def lifecycle_fields(message: SendRequested | dict[str, Any]) -> dict[str, Any]:
    """``LIFECYCLE_FIELDS`` of a message, as event keyword arguments: from the request, or
    from its summary (``message_summary``, the ``postline.messages`` payload)."""
    if isinstance(message, SendRequested):
        return {"workspace_id": message.workspace_id, "service_id": message.service_id, "email_id": message.email_id,
                "from": message.from_, "subject": message.subject, "tags": message.tags,
                "template_id": message.template_id}
    return {"workspace_id": message["workspace_id"], "service_id": message["service_id"],
            "email_id": message["email_id"], "from": message.get("from"), "subject": message.get("subject"),
            "tags": message.get("tags", []), "template_id": message.get("template_id")}


def recipients_in_order(message: SendRequested | dict[str, Any]) -> list[str]:
    """to + cc + bcc as bare addresses: the list a recipient index points into."""
    if isinstance(message, SendRequested):
        listed = (*message.to, *message.cc, *message.bcc)
    else:
        listed = (*message["to"], *message.get("cc", []), *message.get("bcc", []))
    return [split_bare(a) for a in listed]


def recipient_index(message: SendRequested | dict[str, Any], rcpt: str) -> int:
    """Position of ``rcpt`` in ``recipients_in_order`` (case-insensitive; 0 when absent):
    what VERP return paths and unsubscribe tokens carry (shared/verp.py)."""
    everyone = [a.lower() for a in recipients_in_order(message)]
    return everyone.index(rcpt.lower()) if rcpt.lower() in everyone else 0


def recipient_at(message: SendRequested | dict[str, Any], index: int) -> str | None:
    """The recipient a token's index names (``recipient_index`` reversed); None out of range."""
    everyone = recipients_in_order(message)
    return everyone[index] if 0 <= index < len(everyone) else None


SUMMARY_EXCLUDES: set[str] = {"html", "text", "attachments", "headers", "raw_mime"}  # never changed: a set is what pydantic takes
"""What a message summary leaves out of the request: bodies, headers and attachments, so
a remembered send costs about a kilobyte however large the message was."""


def message_summary(req: SendRequested) -> dict[str, Any]:
    """The request as JSON-ready dict without ``SUMMARY_EXCLUDES``: what ``GET /emails/{id}``
    reads (services/api/email_lookup.py) and the bounce processor maps tokens with."""
    return req.model_dump(mode="json", by_alias=True, exclude=SUMMARY_EXCLUDES)


class WebhookAttempted(Event):
    """One delivery attempt of one event to one endpoint (the attempts log)."""

    type: Literal["webhook.attempted"] = "webhook.attempted"
    webhook_id: str
    event_id: str
    event_type: str
    attempt: int
    status_code: int | None = None
    latency_ms: float
    outcome: Literal["delivered", "retrying", "failed", "disabled", "skipped"]
    """``skipped``: not tried, the endpoint was disabled meanwhile (a pending retry's last word)."""
    error: str | None = None
    next_attempt_at: datetime | None = None


class WebhookReplay(Event):
    """Re-send ``events`` (full lifecycle event JSON) to one endpoint: replay or test."""

    type: Literal["webhook.replay"] = "webhook.replay"
    webhook_id: str
    events: list[dict[str, Any]]


class HandedDelivery(BaseModel):
    """One pending webhook delivery as its outbox row had it (services/webhooks/outbox.py)."""

    key: str
    event: dict[str, Any]
    attempt: int
    next_at: float
    created: float


class WebhookHandover(Event):
    """Pending deliveries of one endpoint that a webhooks process hands to its group as it
    stops (Kafka: a scaled-down pod takes its volume with it). The process that takes the
    record queues them as they were: attempts made, next attempt's time."""

    type: Literal["webhook.handover"] = "webhook.handover"
    webhook_id: str
    deliveries: list[HandedDelivery]


AnyEvent = Annotated[
    Union[WorkspaceSaved, ServiceSaved, ApiKeySaved, DomainSaved, SandboxRecipientSaved, SuppressionSaved,
          WebhookSaved, AuditEntry, UserSaved, SessionSaved, UserTokenSaved, ReceivingRuleSaved, TemplateSaved,
          TemplateVersionSaved, ShapingSaved, IpPoolSaved, WebhookAttempted, WebhookReplay, WebhookHandover,
          SendRequested, SendCanceled, SendRescheduled,
          Sent, Delivered, Deferred, Bounced, Failed, Dropped, Complained, Opened, Clicked, Unsubscribed, Scheduled, Canceled,
          EmailReceived, Alert],
    Field(discriminator="type"),
]
_adapter: TypeAdapter[Any] = TypeAdapter(AnyEvent)

# (type, version) -> function turning that version's dict into the next version's fields;
# ``decode`` sets ``v`` to version + 1 itself, so an upcaster cannot loop by forgetting it.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def encode(event: Event) -> bytes:
    return event.model_dump_json(by_alias=True).encode()


def decode(raw: bytes) -> Any:
    """Parse an event, upcasting older schema versions. Raises ``pydantic.ValidationError``
    (or ``ValueError`` for bytes that are not JSON)."""
    if not UPCASTERS:  # the fast path while every schema is at version 1
        return _adapter.validate_json(raw)
    obj = json.loads(raw)
    while (up := UPCASTERS.get((obj.get("type"), v := obj.get("v", 1)))) is not None:
        obj = {**up(obj), "v": v + 1}  # the loop advances the version: an upcaster only maps fields
    return _adapter.validate_python(obj)
