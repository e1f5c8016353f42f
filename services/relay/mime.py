"""Build the outgoing MIME message from a send request (standard-library ``email``).

The result uses CRLF line endings throughout, and every line is folded or encoded so no
bare CR/LF or lone '.' line can end the DATA phase early (SMTP smuggling)."""
from __future__ import annotations

import base64
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

import html2text

from shared.addresses import parse_mailbox, format_mailbox
from shared.events import SendRequested

_POLICY = SMTP.clone(max_line_length=998, raise_on_defect=True)


def html_to_text(html: str) -> str:
    conv = html2text.HTML2Text()
    conv.body_width = 0
    conv.ignore_images = True
    return conv.handle(html).strip() + "\n"


def _mailbox(value: str) -> str:
    name, addr = parse_mailbox(value)
    return format_mailbox(name, addr)


def message_id(email_id: str, domain: str) -> str:
    return f"<{email_id}@{domain}>"


def build(req: SendRequested, id_domain: str, extra_headers: dict[str, str] | None = None) -> bytes:
    """The message as bytes ready for DATA (headers, multipart/alternative, attachments)."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _mailbox(req.from_)
    msg["To"] = ", ".join(_mailbox(a) for a in req.to)
    if req.cc:
        msg["Cc"] = ", ".join(_mailbox(a) for a in req.cc)
    if req.reply_to:
        msg["Reply-To"] = ", ".join(_mailbox(a) for a in req.reply_to)
    msg["Subject"] = req.subject
    msg["Date"] = formatdate(req.time.timestamp(), localtime=False, usegmt=True)
    msg["Message-ID"] = message_id(req.email_id, id_domain)
    msg["X-Postline-Id"] = req.email_id
    for name, value in {**req.headers, **(extra_headers or {})}.items():
        msg[name] = value
    text = req.text if req.text is not None else html_to_text(req.html or "")
    msg.set_content(text, subtype="plain", charset="utf-8")
    if req.html is not None:
        msg.add_alternative(req.html, subtype="html", charset="utf-8")
    for att in req.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(base64.b64decode(att.content_base64), maintype=maintype, subtype=subtype,
                           filename=att.filename)
    return msg.as_bytes()
