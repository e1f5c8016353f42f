"""Build the outgoing MIME message from a send request, directly as bytes.

Why not ``email.message.EmailMessage``: it costs ~1 ms a message, and, worse, assigning a
header *parses* the value, so a user's literal ``=?utf-8?q?…=0D=0ABcc:…?=`` subject is
decoded and re-folded into a real second header line (header injection). Here every user
string is data: plain printable ASCII is folded as is, anything else becomes RFC 2047
base64 encoded-words, and nothing user-supplied is ever decoded.

Guarantees: CRLF line endings only; no line over 998 octets; bodies are quoted-printable or
base64, so no bare CR/LF and no lone "." line can reach DATA (SMTP smuggling)."""
from __future__ import annotations

import base64
import binascii
import re
from email.utils import formatdate

from services.relay.html_text import html_to_text  # noqa: F401 (tracking.py imports it from here)
from shared.addresses import ascii_domain, message_id, split_mailbox
from shared.events import SendRequested
from shared.message_size import fit_qp

CRLF = b"\r\n"
_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*\Z")  # atoms that need no quoting
_SAFE_TEXT = re.compile(r"^[\x20-\x7e]*\Z")


def encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 encoded-words of at most 75 characters, split on character boundaries."""
    words, chunk = [], ""
    for ch in text:
        if len(base64.b64encode((chunk + ch).encode())) > 45:  # 12 + 45 + 2 < 75
            words.append(chunk)
            chunk = ""
        chunk += ch
    if chunk or not words:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words]


def fold(name: str, tokens: list[str]) -> bytes:
    """``Name: tok tok …`` folded (CRLF + space) so lines stay under 78 characters."""
    lines, line = [], f"{name}:"
    for tok in tokens:
        if len(line) + 1 + len(tok) > 76 and line != f"{name}:":
            lines.append(line)
            line = " " + tok
        else:
            line += " " + tok
    lines.append(line)
    return "\r\n".join(lines).encode() + CRLF


def _plain_ok(value: str) -> bool:
    """Printable ASCII, nothing that looks like an encoded-word, and foldable under 998 octets."""
    return bool(_SAFE_TEXT.match(value)) and "=?" not in value and all(len(w) <= 900 for w in value.split(" "))


def unstructured(name: str, value: str) -> bytes:
    if _plain_ok(value):
        return fold(name, value.split(" ")) if value else f"{name}: ".encode() + CRLF
    return fold(name, encoded_words(value))


def _display_name(name: str) -> list[str]:
    if not name:
        return []
    if not _plain_ok(name):
        return encoded_words(name)
    if _PHRASE.match(name):
        return name.split(" ")
    return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']


def mailbox_tokens(value: str) -> list[str]:
    name, addr = split_mailbox(value)
    addr = ascii_domain(addr)  # IDN domains as A-labels; a UTF-8 local part makes the message SMTPUTF8
    return [*_display_name(name), f"<{addr}>"] if name else [addr]


def address_header(name: str, values: list[str]) -> bytes:
    tokens: list[str] = []
    for i, v in enumerate(values):
        toks = mailbox_tokens(v)
        if i < len(values) - 1:
            toks[-1] += ","
        tokens += toks
    return fold(name, tokens)


_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _qp(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode()
    out = binascii.b2a_qp(data, istext=True, header=False)
    # b2a_qp leaves a "." at the start of a line as is: encode it, so no line is ever just "."
    # and no line needs dot-stuffing (one regex pass, only when there is such a line).
    if out.startswith(b".") or b"\n." in out:
        out = _LEADING_DOT.sub(b"=2E", out)
    return out.replace(b"\n", CRLF)


def _b64(data: bytes) -> bytes:
    return _lines_of_76(base64.b64encode(data))


def _lines_of_76(enc: bytes) -> bytes:
    return CRLF.join([enc[i:i + 76] for i in range(0, len(enc), 76)])


def _unwrapped_b64(text: str) -> bool:
    """Base64 as the API validated it (``validate=True``: alphabet and padding only, no line
    breaks), which can go into the part as it is. Two fast scans, no decoding."""
    return len(text) % 4 == 0 and "\n" not in text and " " not in text and text.isascii()


def qp_part(subtype: str, encoded: bytes) -> bytes:
    """A text part around its already quoted-printable body."""
    return (f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            .encode() + encoded)


def text_and_html(req: SendRequested) -> bytes:
    """The plain-text part, and the HTML part as its alternative when there is HTML. A text
    part derived from the HTML gets the HTML part's size at most (what the API counted:
    shared.message_size). Each part is encoded once: its encoded length is its size."""
    html_qp = _qp(req.html) if req.html is not None else None
    if req.text is not None:
        text_qp = _qp(req.text)
    else:
        derived, budget = html_to_text(req.html or ""), len(html_qp or b"")
        text_qp = _qp(derived)
        if len(text_qp) > budget:
            text_qp = _qp(fit_qp(derived, budget))
    if html_qp is None:
        return qp_part("plain", text_qp)
    return multipart("alternative", [qp_part("plain", text_qp), qp_part("html", html_qp)], req.email_id)


def _param(name: str, value: str) -> str:
    if _SAFE_TEXT.match(value) and '"' not in value and "\\" not in value:
        return f'{name}="{value}"'
    from urllib.parse import quote

    return f"{name}*=utf-8''{quote(value, safe='')}"  # RFC 2231


def attachment_part(filename: str, content_type: str, content_b64: str, content_id: str | None = None) -> bytes:
    """An attachment; with ``content_id`` an inline part (``Content-ID: <id>``, disposition
    ``inline``) that the HTML shows through ``cid:id``."""
    # The API validated the base64 (services/api/schemas.py): wrap it as it is instead of decoding
    # and encoding a megabyte again (~5 ms of a 1 MB attachment's relay CPU). Anything else is
    # decoded and encoded afresh.
    body = _lines_of_76(content_b64.encode()) if _unwrapped_b64(content_b64) else _b64(base64.b64decode(content_b64))
    disposition, cid = ("inline", f"Content-ID: <{content_id}>\r\n") if content_id else ("attachment", "")
    return (f"Content-Type: {content_type}; {_param('name', filename)}\r\n"
            f"Content-Disposition: {disposition}; {_param('filename', filename)}\r\n{cid}"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + body


def with_attachments(body: bytes, req: SendRequested) -> bytes:
    """The body with its attachments (RFC 2387 for the inline ones)::

        multipart/mixed                 when there are attachments
          multipart/related             when there are inline parts and HTML
            <body>                      text, or multipart/alternative text + HTML
            inline parts                Content-ID, disposition inline
          attachments

    Inline parts belong to the HTML; a message without HTML carries them in
    ``multipart/mixed`` after the text (still ``inline``, with their Content-ID: clients show
    them below the text), since no HTML refers to them."""
    parts = [(a, attachment_part(a.filename, a.content_type, a.content_base64, a.content_id)) for a in req.attachments]
    inline = [p for a, p in parts if a.content_id and req.html is not None]
    attached = [p for a, p in parts if not (a.content_id and req.html is not None)]
    if inline:
        body = multipart("related", [body] + inline, req.email_id)
    if attached:
        body = multipart("mixed", [body] + attached, req.email_id)
    return body


def multipart(subtype: str, parts: list[bytes], seed: str) -> bytes:
    # "=_" can occur in neither quoted-printable (which writes "=" as "=3D") nor base64, so a
    # boundary derived from the email id can never collide with the content.
    boundary = f"=_pl_{subtype[:3]}_{seed.replace('-', '')}"
    out = [f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n".encode()]
    for p in parts:
        out.append(f"--{boundary}\r\n".encode() + p + CRLF)
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def submitted(req: SendRequested, extra_headers: dict[str, str] | None = None) -> bytes:
    """An SMTP-submitted message: the client's bytes, as the API checked and completed them
    (services/api/submission/message.py), after our X-Postline-Id and any extra headers."""
    head = [f"X-Postline-Id: {req.email_id}\r\n".encode()]
    head += [unstructured(name, value) for name, value in (extra_headers or {}).items()]
    if req.raw_mime is None:
        raise ValueError(f"{req.email_id} was not submitted over SMTP")
    return b"".join(head) + base64.b64decode(req.raw_mime)


def build(req: SendRequested, id_domain: str, extra_headers: dict[str, str] | None = None) -> bytes:
    """The message as bytes ready for DATA (headers, multipart/alternative, inline parts, attachments)."""
    if req.raw_mime is not None:  # SMTP submission: sent as the client wrote it
        return submitted(req, extra_headers)
    head = [address_header("From", [req.from_]), address_header("To", req.to)]
    if req.cc:
        head.append(address_header("Cc", req.cc))
    if req.reply_to:
        head.append(address_header("Reply-To", req.reply_to))
    head.append(unstructured("Subject", req.subject))
    head.append(f"Date: {formatdate(req.time.timestamp(), usegmt=True)}\r\n".encode())
    head.append(f"Message-ID: {message_id(req.email_id, id_domain)}\r\n".encode())
    head.append(f"X-Postline-Id: {req.email_id}\r\n".encode())
    for name, value in {**req.headers, **(extra_headers or {})}.items():
        head.append(unstructured(name, value))
    head.append(b"MIME-Version: 1.0\r\n")
    return b"".join(head) + with_attachments(text_and_html(req), req)
