"""Request and response models of the public API (they are the OpenAPI schema)."""
from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import string
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from services.api.when import parse_natural
from services.api.text_checks import check_encodable
from shared.addresses import AddressError, has_forbidden_chars, parse_mailbox
from shared.message_size import MAX_ATTACHMENTS, MAX_MESSAGE_BYTES, SizeReport, encoded_size
from shared.events import ProviderLimits
from shared.ssrf import check_url_shape

MAX_RECIPIENTS = 50
MAX_HEADERS = 50
MAX_TAGS = 20
RESERVED_HEADERS = {
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender", "return-path",
    "dkim-signature", "mime-version", "content-type", "content-transfer-encoding", "received",
    "list-unsubscribe", "list-unsubscribe-post", "x-postline-id",
}
BLOCKED_EXTENSIONS = {
    "exe", "bat", "cmd", "com", "cpl", "js", "jse", "msi", "msp", "pif", "scr", "vbs", "vbe", "wsf",
    "wsh", "ps1", "hta", "jar", "lnk", "reg", "dll", "app", "scf", "inf",
}
HEADER_NAME = re.compile(r"^X-[A-Za-z0-9-]{1,76}\Z")
TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+"  # RFC 2045 token: US-ASCII, no space, controls or tspecials
MIME_TYPE = re.compile(f"{_TOKEN}/{_TOKEN}")
CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,200}")  # RFC 5322 atext, dots and @: a msg-id's halves


class ErrorBody(BaseModel):
    error: str = Field(examples=["to: is not a valid address ('bob')"])
    # the same error as Resend's SDKs read it (services/api/errors.py)
    message: str | None = Field(None, description="Same as `error`.")
    name: str | None = Field(None, examples=["validation_error"], description="Machine-readable code.")
    statusCode: int | None = Field(None, examples=[400], description="The HTTP status again.")


class AttachmentIn(BaseModel):
    """Postline's shape ``{filename, content_base64, content_type}`` or Resend's
    ``{filename, content | path, content_type?, content_id?}`` (``content``: base64, or bytes
    as a list of integers as Resend's Python SDK sends them; the type is then guessed from the
    name). ``path`` is fetched when the send is accepted (services/api/remote_attachments.py);
    ``content_id`` (Resend's Python SDK also says ``inline_content_id``) makes an inline part."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255, examples=["receipt.pdf"],
                          description="Required unless `path` is given (then the URL's last segment).")
    content_base64: str | None = Field(None, examples=["JVBERi0xLjQK"], description="Required unless `content` or `path` is given.")
    content_type: str = Field("application/octet-stream", max_length=255, examples=["application/pdf"])
    content: str | list[int] | None = Field(None, description="Resend's name for the base64 content.")
    path: str | None = Field(None, max_length=2048, examples=["https://files.acme.test/invoice.pdf"],
                             description="Resend's remote attachment: an http(s) URL fetched when the send is accepted "
                                         "(public addresses only; the message size limit applies); a failure is a 422.")
    content_id: str | None = Field(None, max_length=200, examples=["logo"],
                                   description="Makes an inline part (`multipart/related`), shown by `<img src=\"cid:logo\">`.")

    @model_validator(mode="before")
    @classmethod
    def _resend_shape(cls, data: Any) -> Any:
        """Resend's fields become Postline's before the field rules run."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "inline_content_id" in data:
            inline = data.pop("inline_content_id")
            if data.get("content_id") not in (None, inline):
                raise ValueError("content_id: give either content_id or inline_content_id, not both")
            data["content_id"] = inline
        if isinstance(data.get("content_id"), str):
            data["content_id"] = data["content_id"].strip().removeprefix("<").removesuffix(">")  # as Resend's Node SDK does
        if isinstance(data.get("path"), str) and not data.get("filename"):
            data["filename"] = filename_of_url(data["path"])
        if "content" not in data:
            return data
        content = data.pop("content", None)
        if "content_base64" in data and content is not None:
            raise ValueError("content: give either content or content_base64, not both")
        if isinstance(content, list):
            if not all(isinstance(b, int) and 0 <= b <= 255 for b in content):
                raise ValueError("content: a list must hold bytes (integers 0-255)")
            content = base64.b64encode(bytes(content)).decode()
        if content is not None:
            data["content_base64"] = content
        if not data.get("content_type") and isinstance(data.get("filename"), str):
            data["content_type"] = mimetypes.guess_type(data["filename"])[0] or "application/octet-stream"
        return data

    @model_validator(mode="after")
    def _has_content(self) -> Self:
        if self.content_base64 is not None and self.path is not None:
            raise ValueError("content: give either content or path, not both")
        if self.content_base64 is None and self.path is None:
            raise ValueError("content: field required (base64 content, or a path URL to fetch)")
        return self

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            check_url_shape(v)  # the address itself is checked when it is fetched (the SSRF guard)
        return v

    @field_validator("content_id")
    @classmethod
    def _content_id(cls, v: str | None) -> str | None:
        if v is not None and not CONTENT_ID.fullmatch(v):
            raise ValueError("must be 1-200 characters of letters, digits and !#$%&'*+-/=?^_`{|}~.@ "
                             "(used as <img src=\"cid:…\">)")
        return v

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str) -> str:
        if has_forbidden_chars(v) or "/" in v or "\\" in v:
            raise ValueError("must be a plain file name")
        # Windows drops trailing dots and spaces: "a.exe." and "a.exe " open as "a.exe"
        ext = v.rstrip(". ").rsplit(".", 1)[-1].lower() if "." in v.rstrip(". ") else ""
        if ext in BLOCKED_EXTENSIONS:
            raise ValueError(f"has a blocked extension ({ext})")
        return v

    @field_validator("content_type")
    @classmethod
    def _ctype(cls, v: str) -> str:
        if not MIME_TYPE.fullmatch(v):
            raise ValueError("must be a MIME type like application/pdf (RFC 2045 tokens: ASCII, no parameters)")
        if v.lower().startswith(("multipart/", "message/")):
            # composite types: an attachment goes out as one base64 leaf, which RFC 2046 forbids for
            # these (a multipart needs its boundary, message/* may not be base64-encoded)
            raise ValueError(f"{v} is a composite type; send the file as application/octet-stream (or message as "
                             "a .eml file with that type)")
        return v

    @field_validator("content_base64")
    @classmethod
    def _b64(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not strict_base64(v):
            raise ValueError("must be valid base64")
        return v


_B64_ALPHABET = (string.ascii_letters + string.digits + "+/").encode()


def strict_base64(v: str) -> bool:
    """What ``base64.b64decode(v, validate=True)`` accepts. Usual base64 — the alphabet, then
    at most two ``=`` at the end, a length that is a multiple of 4 — is recognised without
    decoding (deleting the alphabet's bytes is one C pass: 0.7 ms for a 1 MB attachment,
    decoding 3.5 ms); anything else is left to the decoder's own judgement."""
    if len(v) % 4 == 0 and v.isascii():
        rest = v.encode("ascii").translate(None, _B64_ALPHABET)
        if rest in (b"", b"=", b"==") and v.endswith(rest.decode()):
            return True
    try:
        base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def filename_of_url(url: str) -> str:
    """A remote attachment's file name when none is given: the URL path's last segment."""
    from pathlib import PurePosixPath
    from urllib.parse import unquote, urlsplit

    return PurePosixPath(unquote(urlsplit(url).path)).name[:255] or "attachment"


class TagIn:
    """Resend's tag shape ``{name, value}``; Postline keeps it as the string ``name:value``
    (or ``name``), so stats, the message log and webhooks filter on ``tag=name:value``."""

    @staticmethod
    def from_object(tag: dict, index: int) -> str:
        unknown = set(tag) - {"name", "value"}
        if unknown:
            raise ValueError(f"item {index}: unknown field {sorted(unknown)[0]!r} (a tag object is {{name, value}})")
        name, value = tag.get("name"), tag.get("value")
        if not isinstance(name, str) or not name:
            raise ValueError(f"item {index}: name must be a non-empty string")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"item {index}: value must be a string")
        return name if value is None else f"{name}:{value}"


def _address_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if len(items) > MAX_RECIPIENTS:  # before parsing each one: a 40 MB list would hold a worker for a minute
        raise ValueError(f"at most {MAX_RECIPIENTS} addresses")
    for item in items:
        try:
            parse_mailbox(item)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
    return list(items)


class TemplateRef(BaseModel):
    """Send a stored template's published version (docs/templates.md)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200, description="The template's id or alias.")
    variables: dict[str, Any] | None = Field(None, max_length=50, examples=[{"FIRST_NAME": "Ann"}],
                                            description="Values of the template's variables (string or number).")


class SendEmail(BaseModel):
    """One email. ``message`` (HTML; ``html`` is an alias) and/or ``text`` is required, or a
    ``template`` (which may also give ``from`` and ``subject``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{
        "from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "subject": "Welcome",
        "message": "<p>Hello Ann</p>", "tags": ["welcome"]}]})

    from_: str = Field("", alias="from", description="Sender, bare or `Name <addr>`; required unless the template gives one.")
    to: str | list[str] = Field(description="Recipient or list of recipients.")
    cc: str | list[str] | None = None
    bcc: str | list[str] | None = None
    reply_to: str | list[str] | None = None
    subject: str = Field("", max_length=998, description="Required (the seed marks it so) unless a template gives one; "
                                                        "may be empty only if given explicitly.")
    message: str | None = Field(None, description="HTML body.")
    html: str | None = Field(None, description="Alias of `message`.")
    text: str | None = Field(None, description="Plain-text body; derived from the HTML when absent.")
    headers: dict[str, str] | None = Field(None, description="Extra `X-…` headers.")
    attachments: list[AttachmentIn] | None = Field(None, max_length=MAX_ATTACHMENTS)
    tags: list[str] | None = None
    scheduled_at: datetime | None = Field(None, description="Deliver not before this time (ISO 8601, at most 30 days ahead).")
    track_opens: StrictBool | None = Field(None, description="Open tracking for this message (default: the service's).")
    track_clicks: StrictBool | None = Field(None, description="Click tracking for this message (default: the service's).")
    list_unsubscribe: StrictBool | None = Field(
        None, description="RFC 8058 one-click List-Unsubscribe headers for this message (default: the service's).")
    template: TemplateRef | None = Field(None, description="A stored template instead of `html`/`text`.")
    require_tls: StrictBool | None = Field(
        None, description="`true`: deliver only over certificate-verified TLS, else defer (like SES `TlsPolicy: REQUIRE`); "
                          "a send can add the requirement, not lift the service's `require_tls`.")

    @model_validator(mode="before")
    @classmethod
    def _encodable(cls, data: Any) -> Any:
        check_encodable(data)  # here too, not only at the door: a batch judges each item alone
        return data

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        try:
            parse_mailbox(v)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("to", "cc", "bcc", "reply_to")
    @classmethod
    def _addresses(cls, v: str | list[str] | None) -> list[str] | None:
        return _address_list(v) if v is not None else None

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        if has_forbidden_chars(v):
            raise ValueError("must not contain line breaks or NUL")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        if len(v) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers")
        for name, value in v.items():
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is a reserved header")
            if not HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not allowed: only X-… header names")
            if has_forbidden_chars(value) or len(value.encode("utf-8")) > 998:
                raise ValueError(f"value of {name} must be one line of at most 998 bytes (UTF-8)")
        return v

    @field_validator("tags", mode="before")
    @classmethod
    def _resend_tags(cls, v: Any) -> Any:
        """Resend's ``[{name, value}]`` tags become ``name:value`` strings (docs/compatibility.md)."""
        if not isinstance(v, list):
            return v
        return [TagIn.from_object(t, i) if isinstance(t, dict) else t for i, t in enumerate(v)]

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(v) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        for tag in v:
            if not TAG.match(tag):
                raise ValueError(f"{tag!r}: tags are 1-64 characters of letters, digits, _ . : -")
        return v

    @field_validator("scheduled_at", mode="before")
    @classmethod
    def _natural(cls, v: Any) -> Any:
        """Also Resend's natural-language forms: ``in 1 min``, ``tomorrow at 9am`` (UTC)."""
        return (parse_natural(v) or v) if isinstance(v, str) else v

    @field_validator("scheduled_at")
    @classmethod
    def _scheduled(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        if v > datetime.now(timezone.utc) + timedelta(days=30):
            raise ValueError("at most 30 days ahead")
        return v

    @model_validator(mode="after")
    def _whole(self) -> Self:
        if self.message is not None and self.html is not None and self.message != self.html:
            raise ValueError("message: give either message or html, not both")
        if self.template is None:  # a template gives these (services/api/template_send.py)
            for name, shown in (("from_", "from"), ("subject", "subject")):
                if name not in self.model_fields_set:
                    raise ValueError(f"{shown}: field required")
            if self.html_body is None and self.text is None:
                raise ValueError("message: at least one of message (html) or text is required")
        if not self.to_list:
            raise ValueError("to: at least one recipient is required")
        if len(self.to_list) + len(self.cc_list) + len(self.bcc_list) > MAX_RECIPIENTS:
            raise ValueError(f"to: at most {MAX_RECIPIENTS} recipients across to, cc and bcc")
        seen: dict[str, int] = {}
        for i, a in enumerate(self.attachments or []):
            if a.content_id is not None and seen.setdefault(a.content_id, i) != i:
                raise ValueError(f"attachments[{i}].content_id: {a.content_id!r} is already the content_id of "
                                 f"attachments[{seen[a.content_id]}]")
        size = self.encoded_size(exact=False)  # a cheap bound first; most messages are far below the limit
        if size.total > MAX_MESSAGE_BYTES:
            size = self.encoded_size()
        if size.total > MAX_MESSAGE_BYTES:
            raise ValueError(f"{size.largest}: the encoded message would be {size.total} bytes, over the limit of "
                             f"{MAX_MESSAGE_BYTES} bytes ({MAX_MESSAGE_BYTES // (1024 * 1024)} MiB)")
        return self

    def encoded_size(self, exact: bool = True) -> SizeReport:
        """What the relay will build, in bytes (``shared.message_size``)."""
        return encoded_size(from_=self.from_, to=self.to_list + self.bcc_list, cc=self.cc_list, reply_to=self.reply_to_list,
                            subject=self.subject, headers=self.headers or {}, html=self.html_body, text=self.text,
                            attachments=[(a.filename, a.content_type, a.content_base64 or "", a.content_id)
                                         for a in self.attachments or []],
                            exact=exact)

    @property
    def html_body(self) -> str | None:
        return self.message if self.message is not None else self.html

    @property
    def to_list(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)

    @property
    def cc_list(self) -> list[str]:
        return _address_list(self.cc)

    @property
    def bcc_list(self) -> list[str]:
        return _address_list(self.bcc)

    @property
    def reply_to_list(self) -> list[str]:
        return _address_list(self.reply_to)


class Tracking(BaseModel):
    opens: bool
    clicks: bool
    list_unsubscribe: bool


class SendResult(BaseModel):
    id: str = Field(examples=["5b1c8a7e-3f7e-4f5e-9a50-0b1f4e7f2a11"])
    status: Literal["sent", "failed"]
    mode: Literal["production", "sandbox", "sandbox_fallback"]
    from_: str = Field(alias="from")
    to: list[str]
    message: str = Field(examples=["Email sent to 1 recipient via domain acme.test"])
    dropped: list[dict] = Field(default_factory=list, description="Recipients not sent to, with the reason.")
    tracking: Tracking | None = Field(None, description="Whether opens, clicks and List-Unsubscribe were on.")

    model_config = ConfigDict(populate_by_name=True)


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, examples=["billing"])


class RateLimitsUpdate(BaseModel):
    """A service's own base limits; reputation multiplies them like the global base."""

    model_config = ConfigDict(extra="forbid")
    per_minute: int | None = Field(None, ge=1, le=1_000_000, description="Messages per minute; null = the global base.")
    per_day: int | None = Field(None, ge=1, le=100_000_000, description="Messages per day; null = the global base.")


class AlertThresholds(BaseModel):
    """Over the last 24 h: an ``alert`` event when a rate goes over its threshold, another when
    it is back under (docs/analytics.md)."""
    model_config = ConfigDict(extra="forbid")
    bounce_rate: float | None = Field(None, gt=0, le=1, description="bounced / (delivered + bounced); default 0.04.")
    complaint_rate: float | None = Field(None, gt=0, le=1, description="complained / delivered; default 0.001.")
    min_volume: int | None = Field(None, ge=1, le=10_000_000, description=(
        "delivered + bounced in the window before a rate counts; default 100."))


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    mode: Literal["sandbox", "production"] | None = None
    status: Literal["active", "disabled"] | None = None
    track_opens: StrictBool | None = None
    track_clicks: StrictBool | None = None
    list_unsubscribe: StrictBool | None = None
    rate_limits: RateLimitsUpdate | None = Field(
        None, description="Override the base limits of this service (`null` fields fall back to the global base).")
    receiving_retention_days: int | None = Field(None, ge=1, le=365, description="Days received mail is kept (default 30).")
    ip_pool_id: str | None = Field(None, max_length=64, description="The source IP pool the service's mail leaves from (`/api/email/ip-pools`); `\"\"` for the host's default address.")
    require_tls: StrictBool | None = Field(None, description="Deliver this service's mail only over certificate-verified TLS, else defer.")
    alerts: AlertThresholds | None = Field(None, description="Thresholds of the bounce and complaint rate alerts (fields left out are kept).")


KeyPermission = Literal["full_access", "sending_access"]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, examples=["production server"])
    permission: KeyPermission = Field("sending_access", description=(
        "`sending_access` (the default) only sends; `full_access` also manages its own service through "
        "Resend's paths (`/domains`, `/api-keys`, `/suppressions`, `/webhooks`, `GET /emails`)."))
    domain_id: str | None = Field(None, max_length=64, description=(
        "A domain of the service: the key may then only send From that domain (`sending_access` keys only)."))


RETURN_PATH_HELP = ("The bounce subdomain (`em` → `em.<domain>`): the return path (VERP MAIL FROM) of the domain's "
                    "mail, with its MX and SPF records to publish; null: `bounces`.")


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str = Field(min_length=3, max_length=253, examples=["acme.test"])
    tracking_host: str | None = Field(None, max_length=253, examples=["track.acme.test"],
                                      description="A host under the domain for tracking links (CNAME to Postline).")
    return_path: str | None = Field(None, max_length=253, examples=["em"], description=RETURN_PATH_HELP)


class DomainUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking_host: str | None = Field(None, max_length=253, examples=["track.acme.test"],
                                      description="A host under the domain for tracking links; null removes it.")
    receiving: StrictBool | None = Field(None, description="Receive mail for any address at the domain: adds an MX "
                                                          "record to publish (docs/receiving.md).")
    return_path: str | None = Field(None, max_length=253, examples=["em"], description=RETURN_PATH_HELP)
    dkim_rotation_days: int | None = Field(None, ge=7, le=3650, description="Rotate the DKIM keys when they are this many "
                                                                          "days old (e.g. 180); null: never (the default).")


class SandboxEmailCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(examples=["dev@acme.test"])

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        try:
            name, addr = parse_mailbox(v)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        return addr.lower()


class BatchError(BaseModel):
    index: int = Field(description="The item's place in the request, from 0.")
    message: str = Field(examples=["[1].to: is not a valid address ('bob')"])


class BatchResult(BaseModel):
    data: list[dict] = Field(description="The send result of each item sent, in request order.")
    errors: list[BatchError] | None = Field(None, description="The items not sent (`permissive` mode, or over the rate limit).")


class RecipientState(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str = Field(examples=["delivered"])


class EmailRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str
    # what Resend's SDKs read besides the seed's fields (docs/compatibility.md)
    object: Literal["email"] = "email"
    last_event: str = Field("queued", examples=["delivered"], description="Type of the latest event in Resend's names "
                            "(`suppressed`, `delivery_delayed`); `scheduled`, `canceled` or `queued` before delivery starts.")
    message_id: str = Field(examples=["<4ef9a1c3-…@acme.test>"], description="The mail's Message-ID header, "
                            "known from acceptance on (docs/compatibility.md).")
    reply_to: list[str] = []
    html: str | None = Field(None, description="Always null: bodies are not kept after sending.")
    text: str | None = Field(None, description="Always null: bodies are not kept after sending.")
    status: Literal["sent", "failed"]
    mode: Literal["production", "sandbox", "sandbox_fallback"]
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str] = []
    bcc: list[str] = []
    subject: str
    tags: list[str] = []
    created_at: str
    scheduled_at: str | None = None
    message: str
    recipients: dict[str, RecipientState]
    events: list[dict]
    tracking: Tracking | None = None
    template_id: str | None = Field(None, description="The stored template the message was rendered from.")


class ScheduleUpdate(BaseModel):
    """``PATCH /emails/{id}``: move a scheduled email (Resend's update-email)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="Ignored (Resend's SDKs repeat the path's id here).")
    scheduled_at: datetime = Field(description="ISO 8601 or `in 1 min`, `tomorrow at 9am` (UTC); at most 30 days ahead.")

    @field_validator("scheduled_at", mode="before")
    @classmethod
    def _natural(cls, v: Any) -> Any:
        return SendEmail._natural(v)

    @field_validator("scheduled_at")
    @classmethod
    def _limit(cls, v: datetime) -> datetime | None:
        return SendEmail._scheduled(v)


class ScheduleChanged(BaseModel):
    object: Literal["email"] = "email"
    id: str


# ---------------------------------------------------------------- management responses

class RateLimitView(BaseModel):
    per_minute: int = Field(examples=[600], description="In force now: the base times the reputation factor.")
    per_day: int = Field(examples=[10000])
    base_per_minute: int = Field(examples=[600], description="The service's override, else the global base.")
    base_per_day: int = Field(examples=[10000])
    overridden: bool = Field(description="True when an admin set this service's own base limits.")
    sandbox_per_day: int = Field(examples=[50])
    reputation_tier: int = Field(examples=[0])
    usage: dict[str, int] = Field(examples=[{"this_minute": 3, "today": 120, "sandbox_today": 0}],
                                  description="Units counted in the sliding windows: the last 60 s, the last 24 h, sandbox sends of the last 24 h.")


class AlertThresholdsView(BaseModel):
    bounce_rate: float
    complaint_rate: float
    min_volume: int


class ServiceView(BaseModel):
    id: str
    name: str = Field(examples=["billing"])
    mode: Literal["sandbox", "production"]
    status: Literal["active", "disabled"]
    track_opens: bool
    track_clicks: bool
    list_unsubscribe: bool = False
    receiving_retention_days: int = 30
    ip_pool_id: str | None = None
    require_tls: bool = False
    created_at: str
    rate_limits: RateLimitView | None = None
    alerts: AlertThresholdsView | None = None


class ServiceList(BaseModel):
    data: list[ServiceView]


class ApiKeyView(BaseModel):
    id: str
    name: str
    prefix: str = Field(examples=["rs_eml_a8K2"])
    created_at: str
    permission: KeyPermission = "sending_access"
    domain_id: str | None = None


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="The secret, shown only in this response.",
                     examples=["rs_eml_a8K2pX7dL3qVnWj4mC9bRzT1yU6sH0eF"])


class ApiKeyList(BaseModel):
    data: list[ApiKeyView]


class DnsRecord(BaseModel):
    record: Literal["SPF", "DKIM", "DMARC", "MX", "RETURN_PATH", "TRACKING", "RECEIVING"]
    type: Literal["TXT", "MX", "CNAME"]
    name: str = Field(examples=["plrab12cd._domainkey.acme.test"])
    value: str
    value_strings: list[str] | None = Field(None, description="The value split into ≤255-byte TXT strings.")
    required: bool
    dkim_set: Literal["current", "pending", "retiring"] | None = Field(
        None, description="DKIM records: the set signing now, the next one (publish it; signing moves to it once "
                          "verified) or the replaced one (keep it published until `retiring_until`).")


class DnsCheck(BaseModel):
    record: str
    name: str
    expected: str
    dkim_set: str | None = None
    seen: list[str]
    status: Literal["found", "missing", "mismatch", "error"]
    detail: str | None = None


class DomainView(BaseModel):
    id: str
    domain: str = Field(examples=["acme.test"])
    status: Literal["pending", "verified"]
    verified: bool
    verified_at: str | None = Field(None, description="Absent until the domain is verified.")
    created_at: str
    records: list[DnsRecord]
    tracking_host: str | None = None
    receiving: bool = False
    last_check: dict | None = None
    checks: list[DnsCheck] | None = None
    return_path: str = Field("bounces", description="The bounce subdomain's label: mail's return path is on <return_path>.<domain>.")
    dkim_rotation_days: int | None = Field(None, description="Scheduled DKIM rotation: a new key set when the current one is this many days old.")
    dkim_rotated_at: str | None = Field(None, description="When the current DKIM key set took over (absent: since creation).")
    retiring_until: str | None = Field(None, description="The replaced DKIM set stays listed until then.")


class DomainList(BaseModel):
    data: list[DomainView]


class SandboxEmailView(BaseModel):
    id: str
    email: str
    status: Literal["pending", "verified"]
    verified: bool
    created_at: str
    verified_at: str | None
    verification_email_id: str | None = None


class SandboxEmailList(BaseModel):
    data: list[SandboxEmailView]


class SuppressionView(BaseModel):
    email: str
    reason: str = Field(examples=["hard_bounce"])
    detail: str | None
    source_email_id: str | None
    created_at: str


class SuppressionList(BaseModel):
    data: list[SuppressionView]
    next_cursor: str | None


class AuditActor(BaseModel):
    type: str = Field(examples=["admin_token"], description="`admin_token`, `api_key`, `user` or `cli`.")
    id: str = Field(description="Admin token: its hash's first 12 hex digits; API key: the key id; user: the user id; "
                                "cli: the operating-system user and the command.")


class AuditTarget(BaseModel):
    type: str = Field(examples=["service"])
    id: str


class AuditEntryView(BaseModel):
    id: str
    time: str
    actor: AuditActor
    action: str = Field(examples=["service.updated"])
    target: AuditTarget
    service_id: str | None = None
    before: dict[str, Any] | None = Field(None, description="Fields before the change (secrets shown as `[redacted]`).")
    after: dict[str, Any] | None = Field(None, description="Fields after the change (secrets shown as `[redacted]`).")
    source: str | None = Field(None, description="The client's address.")
    request_id: str | None = None


class AuditPage(BaseModel):
    data: list[AuditEntryView]
    has_more: bool
    next_cursor: str | None = Field(None, description="Pass as `after` for the next (older) page.")


SHAPING_MAX_PROVIDERS = 200
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")


class ShapingUpdate(BaseModel):
    """``PUT /api/email/shaping``: the operator's limits per provider (a built-in name, a
    name from POSTLINE_PROVIDERS, or ``other`` for every destination without one); the
    providers left out keep their built-in limits."""
    model_config = ConfigDict(extra="forbid")
    providers: dict[str, ProviderLimits] = Field(max_length=SHAPING_MAX_PROVIDERS)

    @field_validator("providers")
    @classmethod
    def _names(cls, v: dict[str, ProviderLimits]) -> dict[str, ProviderLimits]:
        for name in v:
            if not _PROVIDER_NAME.match(name):
                raise ValueError(f"provider name {name[:70]!r}: lowercase letters, digits, '_', '.', '-' (1-63)")
        return v


class PoolAddressInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip: str = Field(max_length=64, examples=["203.0.113.7"])
    ehlo_name: str = Field(min_length=1, max_length=253, examples=["mta1.acme.com"])
    warm: StrictBool = False

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        import ipaddress

        try:
            return str(ipaddress.ip_address(v.strip()))
        except ValueError:
            raise ValueError("not an IPv4 or IPv6 address") from None

    @field_validator("ehlo_name")
    @classmethod
    def _ehlo(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}", v.rstrip(".")):
            raise ValueError("not a host name")
        return v.rstrip(".").lower()


IP_POOL_MAX_ADDRESSES = 256
WARMUP_MAX_DAYS = 120


class IpPoolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, examples=["transactional"])
    addresses: list[PoolAddressInput] = Field(default=[], max_length=IP_POOL_MAX_ADDRESSES)
    warmup_schedule: list[int] | None = Field(None, max_length=WARMUP_MAX_DAYS, description=(
        "Each provider's daily cap for a new address on day 1, 2, …; after the last day none. Default: 30 days from 50 to 40000."))

    @field_validator("warmup_schedule")
    @classmethod
    def _caps(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(c < 0 or c > 10_000_000 for c in v):
            raise ValueError("each cap is between 0 and 10000000")
        return v

    @field_validator("addresses")
    @classmethod
    def _distinct(cls, v: list[PoolAddressInput] | None) -> list[PoolAddressInput] | None:
        if v is not None and len({a.ip for a in v}) != len(v):
            raise ValueError("an address is listed twice")
        return v


class IpPoolUpdate(IpPoolCreate):
    name: str | None = Field(None, min_length=1, max_length=100)  # type: ignore[assignment]
    addresses: list[PoolAddressInput] | None = Field(None, max_length=IP_POOL_MAX_ADDRESSES)  # type: ignore[assignment]
