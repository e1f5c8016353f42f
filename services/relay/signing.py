"""DKIM signing with the sending domain's two keys (RSA-2048 and Ed25519), via dkimpy.

Private keys are unsealed once per domain and kept parsed in memory."""
from __future__ import annotations

import base64
from functools import lru_cache

import dkim

from shared.crypto import unseal
from shared.events import DomainSaved

SIGNED_HEADERS = [b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"content-transfer-encoding", b"list-unsubscribe", b"list-unsubscribe-post"]


class Signer:
    def __init__(self, master_key: bytes):
        self.master_key = master_key

    @lru_cache(maxsize=1024)
    def _keys(self, domain_id: str, rsa_sealed: str, ed_sealed: str) -> tuple[bytes, bytes]:
        rsa_pem = unseal(self.master_key, rsa_sealed, domain_id)
        ed_seed = unseal(self.master_key, ed_sealed, domain_id)
        return rsa_pem, base64.b64encode(ed_seed)

    def sign(self, raw: bytes, domain: DomainSaved) -> bytes:
        """Return ``raw`` with two DKIM-Signature headers prepended (Ed25519 outermost)."""
        rsa_pem, ed_key = self._keys(domain.domain_id, domain.rsa_private_sealed, domain.ed_private_sealed)
        present = [h for h in SIGNED_HEADERS if _has_header(raw, h)]
        d = domain.domain.encode()
        rsa_sig = dkim.sign(raw, domain.rsa_selector.encode(), d, rsa_pem, include_headers=present,
                            signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
        ed_sig = dkim.sign(raw, domain.ed_selector.encode(), d, ed_key, include_headers=present,
                           signature_algorithm=b"ed25519-sha256", linesep=b"\r\n")
        return ed_sig + rsa_sig + raw


def _has_header(raw: bytes, name: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(name + b":") or (b"\r\n" + name + b":") in head
