"""Signed tracking tokens: the last path segment of pixel, click and unsubscribe links.

A token carries everything its endpoint needs, so the hottest public URLs need no lookup:
kind (open / click / unsubscribe), email id, service id, recipient address, link index,
issue time, and for a click the original URL itself. It is base64url (no padding) of

    version(1) kind(1) issued(4) link(2) email-id service-id recipient [url] mac(12)

where ids are 16 raw bytes when they are UUIDs (else length-prefixed UTF-8), the recipient
is length-prefixed UTF-8, the URL is the rest, and ``mac`` is HMAC-SHA256 (truncated to 96
bits) under a key derived from the master key for this purpose only. Version 2 is the same
payload zlib-compressed (long URLs). ``verify`` returns None for anything it did not sign:
a tampered, truncated or foreign token is indistinguishable from an unknown one.

The recipient address travels in the link in clear (base64): it is the address the mail
was sent to, so the link reveals nothing its reader does not already have."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Literal

from shared.crypto import derive_key

Kind = Literal["open", "click", "unsubscribe"]
_KIND_BYTE = {"open": b"o", "click": b"c", "unsubscribe": b"u"}
_BYTE_KIND = {v[0]: k for k, v in _KIND_BYTE.items()}
_MAC_LEN = 12
_HEAD = struct.Struct(">BcIH")  # version, kind, issued (unix s), link index
_PLAIN, _DEFLATED = 1, 2
MAX_TOKEN = 16_384  # characters; anything longer is refused before any work

PATHS = {"open": "/t/o/", "click": "/t/c/", "unsubscribe": "/t/u/"}


@dataclass(frozen=True)
class Token:
    kind: Kind
    email_id: str
    service_id: str
    recipient: str
    link: int = 0  # index of the link in the HTML part (clicks); 0 otherwise
    url: str = ""  # the original URL (clicks)
    issued: int = 0  # unix seconds when the message was built


def _pack_id(value: str) -> bytes:
    try:
        u = uuid.UUID(value)
        if str(u) == value:
            return b"\x00" + u.bytes
    except ValueError:
        pass
    raw = value.encode()
    if not 0 < len(raw) < 256:
        raise ValueError("id must be 1-255 bytes")
    return bytes([len(raw)]) + raw


def _unpack_id(buf: bytes, at: int) -> tuple[str, int]:
    n = buf[at]
    if n == 0:
        return str(uuid.UUID(bytes=buf[at + 1:at + 17])), at + 17
    return buf[at + 1:at + 1 + n].decode(), at + 1 + n


class Tokens:
    """Makes and checks tokens under one master key (cheap: one HMAC each way)."""

    def __init__(self, master_key: bytes):
        self._mac = hmac.new(derive_key(master_key, "tracking"), digestmod=hashlib.sha256)

    def _sign(self, payload: bytes) -> bytes:
        m = self._mac.copy()
        m.update(payload)
        return m.digest()[:_MAC_LEN]

    def make(self, kind: Kind, email_id: str, service_id: str, recipient: str, link: int = 0, url: str = "",
             issued: int | None = None) -> str:
        rcpt = recipient.encode()
        if len(rcpt) > 255:
            raise ValueError("recipient longer than 255 bytes")
        body = (_pack_id(email_id) + _pack_id(service_id) + bytes([len(rcpt)]) + rcpt + url.encode())
        version = _PLAIN
        if len(body) > 120:  # long URLs shrink well; short ones would only grow
            packed = zlib.compress(body, 9)
            if len(packed) < len(body):
                body, version = packed, _DEFLATED
        head = _HEAD.pack(version, _KIND_BYTE[kind], int(time.time() if issued is None else issued) & 0xFFFFFFFF,
                          link)
        payload = head + body
        return base64.urlsafe_b64encode(payload + self._sign(payload)).rstrip(b"=").decode()

    def verify(self, token: str, kind: Kind) -> Token | None:
        """The token's contents if this key signed it for ``kind``, else None (never raises)."""
        if not token or len(token) > MAX_TOKEN:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        payload, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        if len(payload) < _HEAD.size or not hmac.compare_digest(mac, self._sign(payload)):
            return None
        version, kind_byte, issued, link = _HEAD.unpack_from(payload)
        if _BYTE_KIND.get(kind_byte[0]) != kind or version not in (_PLAIN, _DEFLATED):
            return None
        try:
            body = payload[_HEAD.size:]
            if version == _DEFLATED:
                body = zlib.decompress(body)
            email_id, at = _unpack_id(body, 0)
            service_id, at = _unpack_id(body, at)
            n = body[at]
            recipient = body[at + 1:at + 1 + n].decode()
            url = body[at + 1 + n:].decode()
        except (IndexError, ValueError, zlib.error):  # signed by us, so only a bug gets here
            return None
        return Token(kind, email_id, service_id, recipient, link, url, issued)


def link(base_url: str, kind: Kind, token: str) -> str:
    """The public URL of a token (``base_url`` without a trailing slash)."""
    return f"{base_url}{PATHS[kind]}{token}"
