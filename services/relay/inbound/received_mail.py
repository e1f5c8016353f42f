"""Parse a received message (the standard library's ``email`` parser, ``policy.default``)
into what the receiving API and ``email.received`` show: addresses, subject, the text and
HTML bodies, headers, threading (Message-ID, In-Reply-To, References) and attachments.

Total: any bytes in, a ``ParsedMail`` out — a header that does not parse is kept as its
raw text, a part whose transfer encoding is broken is kept as far as it decodes. Which
parts are attachments: every leaf part except the chosen text and HTML bodies (inline
images of a ``multipart/related`` included, as Resend lists them); a forwarded
``message/rfc822`` is one attachment (its bytes), not walked into."""
from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import cast

MAX_HEADERS = 500          # a message with more keeps the first ones in ``headers``
MAX_HEADER_VALUE = 16_384  # characters of one header's value kept in ``headers``
MAX_ATTACHMENTS = 100      # parts past this are not listed (the message itself is kept whole)


@dataclass
class ParsedAttachment:
    filename: str | None
    content_type: str
    content_id: str | None
    disposition: str  # inline | attachment
    data: bytes


@dataclass
class ParsedMail:
    from_: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:  # a header the policy cannot parse: its raw text
        value = msg.get_all(name, failobj=[None])[0] if hasattr(msg, "get_all") else None
    return None if value is None else str(value).strip()


def _addresses(msg: Message, name: str) -> list[str]:
    """Each address of a header as ``Name <addr>`` or ``addr``; a header that does not parse
    as addresses is kept as written."""
    try:
        value = msg.get(name)
        if value is None:
            return []
        found = [str(a) for a in getattr(value, "addresses", ()) if a.addr_spec and a.addr_spec != "<>"]
        return found or [str(value).strip()]
    except Exception:
        raw = msg.get_all(name) or []
        return [str(v).strip() for v in raw]


def _text_of(part: Message) -> str | None:
    try:
        return str(cast(EmailMessage, part).get_content())
    except Exception:  # unknown charset or a broken encoding: decode what there is
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None


def _leaves(part: Message) -> list[Message]:
    """Leaf parts in order; a ``message/rfc822`` counts as a leaf."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        return [part]
    out: list[Message] = []
    for sub in part.get_payload() or []:
        if isinstance(sub, Message):
            out += _leaves(sub)
    return out


def _attachment(part: Message) -> ParsedAttachment:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        data = inner[0].as_bytes() if isinstance(inner, list) and inner and isinstance(inner[0], Message) else b""
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    cid = part.get("Content-ID")
    disposition = "inline" if (part.get_content_disposition() == "inline" or (cid and not part.get_filename())) \
        else "attachment"
    try:
        filename = part.get_filename()
    except Exception:
        filename = None
    return ParsedAttachment(filename=filename, content_type=part.get_content_type(),
                            content_id=str(cid).strip().strip("<>") if cid else None, disposition=disposition, data=data)


def _headers(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, (name, value) in enumerate(msg.raw_items() if hasattr(msg, "raw_items") else msg.items()):
        if i >= MAX_HEADERS:
            break
        text = " ".join(str(value).split())[:MAX_HEADER_VALUE]  # unfolded
        out[name] = f"{out[name]}\n{text}" if name in out else text  # a repeated header: one line each
    return out


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse ``raw`` (a whole message as received). Never raises."""
    msg = message_from_bytes(raw, policy=policy.default)
    out = ParsedMail(from_=(_addresses(msg, "From") or [""])[0], to=_addresses(msg, "To"), cc=_addresses(msg, "Cc"),
                     reply_to=_addresses(msg, "Reply-To"), subject=_header(msg, "Subject") or "",
                     headers=_headers(msg), message_id=_header(msg, "Message-ID"),
                     in_reply_to=_header(msg, "In-Reply-To"),
                     references=(_header(msg, "References") or "").split())
    email_msg = msg  # policy.default: an EmailMessage
    bodies: list[Message] = []
    for kind in ("plain", "html"):
        try:
            body = email_msg.get_body(preferencelist=(kind,))
        except Exception:
            body = None
        if body is not None and body.get_content_type() == f"text/{kind}":
            bodies.append(body)
            text = _text_of(body)
            if kind == "plain":
                out.text = text
            else:
                out.html = text
    for part in _leaves(msg):
        if any(part is b for b in bodies) or len(out.attachments) >= MAX_ATTACHMENTS:
            continue
        if part is msg and part.get_content_maintype() == "text" and not part.get_filename():
            continue  # a one-part message whose body is in a charset get_body did not pick
        out.attachments.append(_attachment(part))
    return out
