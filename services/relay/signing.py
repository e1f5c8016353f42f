"""DKIM: two signatures per message (rsa-sha256 and ed25519-sha256, RFC 6376 / RFC 8463).

dkimpy does the DKIM-specific work (message parsing, relaxed/simple canonicalization, the
header hash); the signature itself is made by OpenSSL through ``cryptography`` with keys
parsed once and cached, because dkimpy signs RSA in pure Python (~10x slower) and re-parses
the PEM on every call. OpenSSL releases the GIL, so ``sign_async`` runs the private-key
operations on a small thread pool and they use the second core."""
from __future__ import annotations

import asyncio
from typing import Any, cast
import base64
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from shared.crypto import unseal
from shared.events import DomainSaved

SIGNED_HEADERS = (b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"list-unsubscribe", b"list-unsubscribe-post")
CANON = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/simple")
_PAD, _PREHASHED = padding.PKCS1v15(), Prehashed(hashes.SHA256())


def tag_list(domain: bytes, selector: bytes, algorithm: bytes, include: list[bytes], body_hash: bytes,
             now: int) -> bytes:
    """The signature's tags with an empty ``b=`` (what the signature itself covers)."""
    fields = [(b"v", b"1"), (b"a", algorithm), (b"c", b"relaxed/simple"), (b"d", domain), (b"i", b"@" + domain),
              (b"q", b"dns/txt"), (b"s", selector), (b"t", str(now).encode()), (b"h", b" : ".join(include)),
              (b"bh", body_hash), (b"b", b"")]
    return b"; ".join(b"=".join(f) for f in fields)


def header_digest(signed_headers: hashlib._Hash, tags: bytes) -> bytes:
    """RFC 6376 §3.7: the signed header fields (already hashed, relaxed), then the
    DKIM-Signature field itself, canonicalized, without its trailing CRLF."""
    h = signed_headers.copy()
    ((name, value),) = CANON.canonicalize_headers([(b"DKIM-Signature", b" " + tags)])
    h.update(name + b":" + value.rstrip())
    return h.digest()


def parse_message(raw: bytes) -> tuple[list, bytes]:
    """``dkim.rfc822_parse(raw)``, faster for a message that is CRLF throughout (all that
    mime.build writes): dkimpy splits the whole message into lines with a regex and joins
    the body again (~6% of a relay's CPU, on the body alone); the body of such a message is
    simply the bytes after the first empty line, so only the headers go through dkimpy."""
    head, blank, body = raw.partition(b"\r\n\r\n")
    if blank and raw.count(b"\n") == raw.count(b"\r\n"):
        return dkim.rfc822_parse(head + blank)[0], body
    return dkim.rfc822_parse(raw)


def signature_header(tags: bytes, signature: bytes) -> bytes:
    """The folded, CRLF-terminated ``DKIM-Signature`` header line."""
    value = tags + base64.b64encode(signature)
    return b"DKIM-Signature: " + dkim.fold(value, namelen=len(b"DKIM-Signature: "), linesep=b"\r\n") + b"\r\n"


def private_key_operations(rsa_key: rsa.RSAPrivateKey, rsa_digest: bytes, ed_key: ed25519.Ed25519PrivateKey,
                           ed_digest: bytes) -> tuple[bytes, bytes]:
    """Both signatures; runs on the signing pool (OpenSSL releases the GIL while it works)."""
    return rsa_key.sign(rsa_digest, _PAD, _PREHASHED), ed_key.sign(ed_digest)


def _sign_batch(loop: asyncio.AbstractEventLoop, batch: list[tuple[tuple, asyncio.Future]]) -> None:
    """Pool side: sign every message of the batch, then resolve all their futures at once."""
    results: list[tuple[asyncio.Future[Any], tuple[bytes, bytes] | None, Exception | None]] = []
    for key_work, done in batch:
        try:
            results.append((done, private_key_operations(*key_work), None))
        except Exception as exc:  # a broken key fails its own message only
            results.append((done, None, exc))
    loop.call_soon_threadsafe(_resolve, results)


def _resolve(results: list) -> None:
    for done, signatures, exc in results:
        if done.done():
            continue
        if exc is None:
            done.set_result(signatures)
        else:
            done.set_exception(exc)


class Signer:
    """Canonicalizes and hashes on the caller's thread; the private-key operations (RSA
    ~0.7 ms) run on a small pool. Keeping the Python work off the pool matters: a pool
    thread running Python competes for the GIL, and every call that releases the GIL on
    the event loop's thread (as OpenSSL's do) may then wait for it to come back. Measured
    with ``python -m tests.bench --only relay``: ~0.5 ms of CPU per message saved.
    Two threads, one per core here: 3 and 4 measured no faster (more GIL hand-offs)."""

    def __init__(self, master_key: bytes, threads: int = 2):
        self.master_key, self.threads = master_key, threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dkim")
        self._batch: list[tuple[tuple, asyncio.Future]] = []

    @lru_cache(maxsize=4096)
    def _keys(self, domain_id: str, rsa_sealed: str,
              ed_sealed: str) -> tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]:
        rsa_pem = unseal(self.master_key, rsa_sealed, domain_id)
        ed_seed = unseal(self.master_key, ed_sealed, domain_id)
        return (cast(rsa.RSAPrivateKey, serialization.load_pem_private_key(rsa_pem, password=None)),  # a domain's RSA key
                ed25519.Ed25519PrivateKey.from_private_bytes(ed_seed))

    def _prepare(self, raw: bytes, domain: DomainSaved) -> tuple[
            tuple[bytes, bytes], tuple[rsa.RSAPrivateKey, bytes, ed25519.Ed25519PrivateKey, bytes]]:
        """Everything but the private-key operations: keys, both tag lists, both digests.
        The message is canonicalized and its signed headers hashed once for both."""
        rsa_key, ed_key = self._keys(domain.domain_id, domain.rsa_private_sealed, domain.ed_private_sealed)
        headers, body = parse_message(raw)
        present = {name.lower() for name, _ in headers}
        include = [h for h in SIGNED_HEADERS if h in present]
        signed = hashlib.sha256()
        for name, value in dkim.select_headers(CANON.canonicalize_headers(headers), include):
            signed.update(name + b":" + value)
        body_hash = base64.b64encode(hashlib.sha256(CANON.canonicalize_body(body)).digest())
        d, now = domain.domain.encode(), int(time.time())
        rsa_tags = tag_list(d, domain.rsa_selector.encode(), b"rsa-sha256", include, body_hash, now)
        ed_tags = tag_list(d, domain.ed_selector.encode(), b"ed25519-sha256", include, body_hash, now)
        return (rsa_tags, ed_tags), (rsa_key, header_digest(signed, rsa_tags), ed_key, header_digest(signed, ed_tags))

    @staticmethod
    def _signed(raw: bytes, tags: tuple[bytes, bytes], signatures: tuple[bytes, bytes]) -> bytes:
        return signature_header(tags[1], signatures[1]) + signature_header(tags[0], signatures[0]) + raw

    def sign(self, raw: bytes, domain: DomainSaved) -> bytes:
        """Return ``raw`` with the Ed25519 and RSA DKIM-Signature headers prepended."""
        tags, key_work = self._prepare(raw, domain)
        return self._signed(raw, tags, private_key_operations(*key_work))

    async def sign_async(self, raw: bytes, domain: DomainSaved) -> bytes:
        """``sign`` with the private-key operations on the pool, batched: the messages
        prepared in one turn of the event loop go to the pool together and come back
        with one wake-up of the loop per thread, not one per message."""
        tags, key_work = self._prepare(raw, domain)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if not self._batch:
            loop.call_soon(self._dispatch, loop)
        self._batch.append((key_work, done))
        return self._signed(raw, tags, await done)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._batch = self._batch, []
        share = -(-len(batch) // self.threads)
        for i in range(0, len(batch), share):
            self._pool.submit(_sign_batch, loop, batch[i:i + share])

    def close(self) -> None:
        self._pool.shutdown(wait=False)
