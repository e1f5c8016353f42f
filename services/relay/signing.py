"""DKIM: two signatures per message (rsa-sha256 and ed25519-sha256, RFC 6376 / RFC 8463).

dkimpy does the DKIM-specific work (message parsing, relaxed/simple canonicalization, the
header hash); the signature itself is made by OpenSSL through ``cryptography`` with keys
parsed once and cached, because dkimpy signs RSA in pure Python (~10x slower) and re-parses
the PEM on every call. RSA signing releases the GIL, so ``sign_async`` runs in a small
thread pool and uses the second core."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from shared.crypto import unseal
from shared.events import DomainSaved

SIGNED_HEADERS = (b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"list-unsubscribe", b"list-unsubscribe-post")
CANON = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/simple")
_PAD, _PREHASHED = padding.PKCS1v15(), Prehashed(hashes.SHA256())


def signature_header(canon_headers: list[tuple[bytes, bytes]], body_hash: bytes, domain: bytes, selector: bytes,
                     algorithm: bytes, include: list[bytes], sign, now: int) -> bytes:
    """One ``DKIM-Signature`` header line (folded, CRLF-terminated) over headers already
    canonicalized (relaxed), so two signatures canonicalize the message once."""
    fields = [(b"v", b"1"), (b"a", algorithm), (b"c", b"relaxed/simple"), (b"d", domain), (b"i", b"@" + domain),
              (b"q", b"dns/txt"), (b"s", selector), (b"t", str(now).encode()), (b"h", b" : ".join(include)),
              (b"bh", body_hash), (b"b", b"")]
    unsigned = b"; ".join(b"=".join(f) for f in fields)
    h = hashlib.sha256()
    dkim.hash_headers(h, CANON, canon_headers, include, (b"DKIM-Signature", b" " + unsigned), None)
    value = unsigned + base64.b64encode(sign(h.digest()))
    return b"DKIM-Signature: " + dkim.fold(value, namelen=len(b"DKIM-Signature: "), linesep=b"\r\n") + b"\r\n"


class Signer:
    def __init__(self, master_key: bytes, threads: int = 2):
        self.master_key = master_key
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dkim")

    @lru_cache(maxsize=4096)
    def _keys(self, domain_id: str, rsa_sealed: str, ed_sealed: str):
        rsa_pem = unseal(self.master_key, rsa_sealed, domain_id)
        ed_seed = unseal(self.master_key, ed_sealed, domain_id)
        return (serialization.load_pem_private_key(rsa_pem, password=None),
                ed25519.Ed25519PrivateKey.from_private_bytes(ed_seed))

    def sign(self, raw: bytes, domain: DomainSaved) -> bytes:
        """Return ``raw`` with the Ed25519 and RSA DKIM-Signature headers prepended."""
        rsa_key, ed_key = self._keys(domain.domain_id, domain.rsa_private_sealed, domain.ed_private_sealed)
        headers, body = dkim.rfc822_parse(raw)
        canon_headers = CANON.canonicalize_headers(headers)
        present = {name.lower() for name, _ in headers}
        include = [h for h in SIGNED_HEADERS if h in present]
        body_hash = base64.b64encode(hashlib.sha256(CANON.canonicalize_body(body)).digest())
        d, now = domain.domain.encode(), int(time.time())
        rsa_sig = signature_header(canon_headers, body_hash, d, domain.rsa_selector.encode(), b"rsa-sha256", include,
                                   lambda digest: rsa_key.sign(digest, _PAD, _PREHASHED), now)
        ed_sig = signature_header(canon_headers, body_hash, d, domain.ed_selector.encode(), b"ed25519-sha256", include,
                                  ed_key.sign, now)
        return ed_sig + rsa_sig + raw

    async def sign_async(self, raw: bytes, domain: DomainSaved) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.sign, raw, domain)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
