"""The size of a message as the relay will build it, in bytes, computed without building it.

The API refuses a send whose encoded message would exceed ``MAX_MESSAGE_BYTES``; counting
characters of the request is not that (10 M × "€" is 31 MB of UTF-8 and ~90 MB once
quoted-printable). The rule, part by part, mirrors ``services/relay/mime.py``:

- a text or HTML part counts its exact quoted-printable size (UTF-8, CRLF line ends, the
  "." line guard) plus its part headers;
- a plain-text part the relay derives from the HTML counts as much as the HTML part: the
  relay trims the derived text to that budget (``fit_qp``), since the derived text can expand;
- an attachment counts its exact base64 size (76-character lines) plus its headers (an inline
  one its Content-ID too; the multipart/related wrapper is within ``RESERVE``);
- every header value and address counts as at most 3 bytes per UTF-8 byte + 100 (RFC 2047
  encoded-words, folding, RFC 2231 file names stay under that);
- ``RESERVE`` bytes are kept for what the relay adds (Date, Message-ID, MIME boundaries,
  two DKIM-Signature headers, Return-Path, List-Unsubscribe).

So ``encoded_size(...) >= len(mime.build(...))`` for every request the API accepts, and
exceeds it by at most a few kilobytes (tested, including with hypothesis)."""
from __future__ import annotations

import binascii
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # the encoded message, headers included: what DATA carries
MAX_ATTACHMENTS = 20
RESERVE = 8 * 1024
PART_HEADERS = 200  # Content-Type / Content-Transfer-Encoding lines and the boundary line of a part


def _qp_bytes(text: str) -> bytes:
    return binascii.b2a_qp(text.replace("\r\n", "\n").replace("\r", "\n").encode(), istext=True, header=False)


def qp_size(text: str) -> int:
    """Exact size of ``text`` as the relay's quoted-printable body (CRLF line ends, a line
    starting with "." written as "=2E…")."""
    out = _qp_bytes(text)
    dot_lines = out.count(b"\n.") + out.startswith(b".")
    return len(out) + out.count(b"\n") + 2 * dot_lines


def qp_bound(text: str) -> int:
    """A cheap upper bound of ``qp_size`` (no encoding pass): every byte becomes at most 3
    ("=XX", or CRLF for LF), plus a 3-byte soft break per 73 characters of output."""
    n = 3 * len(text.encode("utf-8"))
    return n + 3 * (n // 73 + 1)


def fit_qp(text: str, budget: int) -> str:
    """The longest prefix of ``text`` (cut on a line or character boundary) whose
    quoted-printable size is within ``budget``; ``text`` itself when it fits."""
    if qp_size(text) <= budget:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on the prefix length: qp_size grows with the prefix
        mid = (lo + hi + 1) // 2
        if qp_size(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def b64_size(content_base64: str) -> int:
    """Exact size of the relay's base64 body (76-character lines, CRLF) for an attachment
    given as (validated, unwrapped) base64."""
    n = len(content_base64) // 4 * 3 - (2 if content_base64.endswith("==") else 1 if content_base64.endswith("=") else 0)
    enc = 4 * ((n + 2) // 3)
    lines = (enc + 75) // 76
    return enc + 2 * max(lines - 1, 0)


def header_size(value: str) -> int:
    return 3 * len(value.encode("utf-8")) + 100


@dataclass
class SizeReport:
    """Bytes per field; ``total`` is what the API compares with ``MAX_MESSAGE_BYTES``."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values()) + RESERVE

    @property
    def largest(self) -> str:
        return max(self.parts, key=lambda name: self.parts[name])


def encoded_size(*, from_: str, to: list[str], cc: list[str], reply_to: list[str], subject: str,
                 headers: dict[str, str], html: str | None, text: str | None,
                 attachments: list[tuple[str, str, str, str | None]], exact: bool = True) -> SizeReport:
    """Upper bound (tight to a few KB) of the built message's size; ``attachments`` are
    ``(filename, content_type, content_base64, content_id)`` (an attachment still to be fetched
    counts with empty content). ``exact=False`` bounds the text parts
    with ``qp_bound`` (looser, ~3x, but without encoding them: quoted-printable costs
    ~18 ms per MB), enough to let most messages through without the exact count."""
    measure = qp_size if exact else qp_bound
    parts = {
        "from": header_size(from_),
        "to": sum(header_size(a) for a in to) + sum(header_size(a) for a in cc) + sum(header_size(a) for a in reply_to),
        "subject": header_size(subject),
        "headers": sum(header_size(k) + header_size(v) for k, v in headers.items()),
    }
    html_size = measure(html) + PART_HEADERS if html is not None else 0
    parts["message"] = html_size
    parts["text"] = (measure(text) if text is not None else html_size - PART_HEADERS) + PART_HEADERS
    parts["attachments"] = sum(b64_size(b64) + header_size(name) * 2 + header_size(ctype) + PART_HEADERS
                               + (header_size(cid) if cid else 0) for name, ctype, b64, cid in attachments)
    return SizeReport(parts)
