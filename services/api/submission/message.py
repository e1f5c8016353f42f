"""Turn a submitted message (the bytes of DATA) into what the send pipeline needs, and back
into the bytes the relay signs and delivers.

``parse`` checks the message and gives the fields of a ``SendEmail`` (validated by the API's
own model, so the rules and messages are the API's); ``finalize`` returns the client's
message with only these changes, every other byte kept as it came:
- ``Bcc`` and ``X-Postline-*`` header fields removed (Bcc recipients are envelope recipients;
  the header would tell every recipient who else got it);
- ``Message-ID`` and ``Date`` added when missing;
- in sandbox modes, ``From`` rewritten to the sandbox sender and the original kept as
  ``Reply-To`` (unless there is one), as the API does.

Refused, with the reply the client gets: bare CR or LF (SMTP smuggling: another server may
read ``\\n.\\n`` as the end of DATA), malformed header lines, reserved header fields (what
Postline or the receiving servers add), a second From/To/Subject/… field, unknown
``X-Postline-*`` fields. Header values are never decoded and re-encoded, so an encoded-word
that decodes to CRLF stays one encoded-word on the wire."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import formataddr, formatdate, getaddresses

from shared.addresses import format_mailbox, parse_mailbox, split_mailbox

CRLF = b"\r\n"
FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 ftext
# Fields Postline or the receiving servers write: a client's copy would be wrong or forged.
RESERVED = {"dkim-signature", "return-path", "x-postline-id", "sender"}
# RFC 5322 §3.6: at most one of each (a second one is how header injection shows up).
SINGLE = {"from", "to", "cc", "subject", "date", "message-id", "reply-to", "mime-version", "content-type",
          "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post", "x-postline-tags",
          "x-postline-track-opens", "x-postline-track-clicks", "x-postline-require-tls"}
TRACKING = {"x-postline-track-opens": "track_opens", "x-postline-track-clicks": "track_clicks"}
POSTLINE_FIELDS = "X-Postline-Tags, X-Postline-Track-Opens, X-Postline-Track-Clicks, X-Postline-Require-TLS"
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class Refused(Exception):
    """The message is refused; ``reply`` is the SMTP reply line."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


@dataclass
class Submitted:
    fields: list[tuple[str, bytes]]  # (lower-case name, the raw field with its folding and CRLF), in order
    body: bytes  # from the empty line that ends the header on (CRLF + body)
    send: dict = field(default_factory=dict)  # the SendEmail fields
    # X-Postline-Track-* as asked; not applied yet: tracking rewrites the HTML the relay builds,
    # and a submitted message is sent as the client wrote it (docs/submission.md)
    tracking: dict = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.fields)

    def raw_value(self, name: str) -> bytes:
        raw = next(f for n, f in self.fields if n == name)
        return raw.split(b":", 1)[1].strip()


def check_line_endings(raw: bytes) -> None:
    crlf = raw.count(CRLF)
    if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:
        raise Refused("550 5.6.0 the message has a bare CR or LF; every line must end with CRLF")


MAX_HEADER_BYTES = 256 * 1024  # the header block (Exchange's default limit); the API door allows 50 extra headers
MAX_HEADER_FIELDS = 1000


def split_fields(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """The header fields (a line starting with a space or tab continues the previous one) and
    the rest; a header block over ``MAX_HEADER_BYTES`` or ``MAX_HEADER_FIELDS`` fields is
    refused (552 5.3.4), as every message is signed and sent with its whole header."""
    end = 0 if raw.startswith(CRLF) else raw.find(CRLF + CRLF)
    head, body = (raw, CRLF) if end < 0 else (raw[:end + 2] if end else b"", raw[end + 2 if end else 0:])
    if len(head) > MAX_HEADER_BYTES:
        raise Refused(f"552 5.3.4 the message header is larger than {MAX_HEADER_BYTES // 1024} KiB")
    if head.count(CRLF) - head.count(CRLF + b" ") - head.count(CRLF + b"\t") > MAX_HEADER_FIELDS:
        raise Refused(f"552 5.3.4 the message has more than {MAX_HEADER_FIELDS} header fields")
    fields: list[tuple[str, bytes]] = []
    for line in head.split(CRLF)[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line + CRLF)
            continue
        field_name, colon, _ = line.partition(b":")
        if not colon or not FIELD_NAME.match(field_name) or b"\0" in line:
            shown = line[:60].decode("ascii", "replace")
            raise Refused(f"550 5.6.0 malformed header line: {shown!r}")
        fields.append((field_name.decode().lower(), line + CRLF))
    return fields, body


def check_fields(fields: list[tuple[str, bytes]]) -> None:
    seen: set[str] = set()
    for name, raw in fields:
        shown = raw.split(b":", 1)[0].decode()
        if name in RESERVED:
            raise Refused(f"550 5.7.1 headers: {shown} is a reserved header")
        if name.startswith("x-postline-") and name not in SINGLE:
            raise Refused(f"550 5.7.1 headers: {shown} is not a Postline header (known: {POSTLINE_FIELDS})")
        if name in SINGLE and name in seen:
            raise Refused(f"550 5.7.1 headers: more than one {shown} header")
        seen.add(name)
    if "from" not in seen:
        raise Refused("550 5.7.1 from: field required")


def decoded(text: str) -> str:
    """RFC 2047 encoded-words decoded (for the record and the checks; the wire keeps the bytes)."""
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return text


def _mailboxes(value: str | None) -> list[str]:
    """``Name <addr>`` strings of an address field (email.utils: ~10x cheaper than the email
    package's header objects); what it cannot parse is passed on for SendEmail to name."""
    if value is None:
        return []
    parsed = getaddresses([value])
    if any(not addr for name, addr in parsed if name):
        return [value.strip()]
    try:
        return [format_mailbox(decoded(name), addr) for name, addr in parsed if addr]
    except ValueError as exc:  # e.g. an encoded-word name that decodes to a line break: the message's fault
        raise Refused(f"550 5.6.0 an address header cannot be used: {exc}") from None


def values(fields: list[tuple[str, bytes]]) -> dict[str, str]:
    """Unfolded value of each field by lower-case name (the first, for the single ones)."""
    out: dict[str, str] = {}
    for name, raw in fields:
        if name not in out:
            value = raw.split(b":", 1)[1].replace(CRLF, b"")
            try:
                out[name] = value.decode("utf-8").strip()
            except UnicodeDecodeError:  # RFC 6532: 8-bit header fields are UTF-8
                shown = raw.split(b":", 1)[0].decode()
                raise Refused(f"550 5.6.0 the {shown} header is not valid UTF-8") from None
    return out


def send_fields(fields: list[tuple[str, bytes]], rcpt_tos: list[str]) -> dict:
    """The ``SendEmail`` of this message: From, Reply-To and Subject from the header; the
    envelope recipients as to/cc/bcc by where (if anywhere) the header names them."""
    msg = values(fields)
    header_to = {split_mailbox(a)[1].lower() for a in _mailboxes(msg.get("to"))}
    header_cc = {split_mailbox(a)[1].lower() for a in _mailboxes(msg.get("cc"))}
    to = [r for r in rcpt_tos if r.lower() in header_to]
    cc = [r for r in rcpt_tos if r.lower() in header_cc and r.lower() not in header_to]
    bcc = [r for r in rcpt_tos if r not in to and r not in cc]
    if not to:  # e.g. "To: undisclosed-recipients:;": the record needs a first recipient
        to, cc, bcc = (bcc, cc, []) if bcc else (cc, [], [])
    froms = _mailboxes(msg["from"])
    out = {"from": froms[0] if len(froms) == 1 else msg["from"], "to": to, "cc": cc or None,
           "bcc": bcc or None, "reply_to": _mailboxes(msg.get("reply-to")) or None,
           "subject": decoded(msg.get("subject", "")), "text": ""}
    if "x-postline-tags" in msg:
        out["tags"] = [t.strip() for t in msg["x-postline-tags"].split(",") if t.strip()]
    return out


def boolean_fields(fields: list[tuple[str, bytes]], names: dict[str, str]) -> dict[str, bool]:
    """The boolean X-Postline-* fields of ``names`` (header → field); ``Refused`` for another value."""
    out = {}
    for name, raw in fields:
        if name in names:
            value = BOOLEANS.get(raw.split(b":", 1)[1].strip().decode("ascii", "replace").lower())
            if value is None:
                raise Refused(f"550 5.7.1 headers: {raw.split(b':', 1)[0].decode()} must be true or false")
            out[names[name]] = value
    return out


def parse(raw: bytes, rcpt_tos: list[str]) -> Submitted:
    """Check the submitted bytes; raises ``Refused``. ``send`` still needs ``SendEmail``'s validation."""
    check_line_endings(raw)
    fields, body = split_fields(raw)
    check_fields(fields)
    # X-Postline-Require-TLS: yes is the send's `require_tls` (docs/delivery.md, "Outbound TLS")
    send = {**send_fields(fields, rcpt_tos), **boolean_fields(fields, {"x-postline-require-tls": "require_tls"})}
    return Submitted(fields, body, send, boolean_fields(fields, TRACKING))


def sandbox_from(from_: str) -> bytes:
    """The rewritten From field; the name is encoded (never parsed back) like the relay does."""
    name, addr = parse_mailbox(from_)
    value = formataddr((name, addr), charset="utf-8") if "=?" not in name else addr
    line = b"From: " + value.encode() + CRLF
    return line if len(line) <= 998 else b"From: " + addr.encode() + CRLF


def finalize(sub: Submitted, from_: str, message_id: str, now: float) -> bytes:
    """The bytes to sign and deliver (see the module docstring). ``from_`` is the effective
    From the pipeline decided; when it differs from the client's, From is rewritten."""
    rewrite = from_ != sub.send["from"]
    out = []
    if not sub.has("message-id"):
        out.append(f"Message-ID: {message_id}\r\n".encode())
    if not sub.has("date"):
        out.append(f"Date: {formatdate(now, usegmt=True)}\r\n".encode())
    for name, raw in sub.fields:
        if name == "bcc" or name.startswith("x-postline-"):
            continue
        if name == "from" and rewrite:
            out.append(sandbox_from(from_))
            if not sub.has("reply-to"):
                out.append(b"Reply-To: " + sub.raw_value("from") + CRLF)
            continue
        out.append(raw)
    return b"".join(out) + sub.body
