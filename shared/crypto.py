"""Secrets: generation, hashing, encryption at rest and key derivation.

- API keys and admin tokens are stored only as SHA-256 hashes (they are long random
  strings, so a fast hash is enough; no salt is needed against guessing).
- DKIM private keys and webhook secrets are sealed with AES-256-GCM under the master key.
- Tokens (tracking, VERP, unsubscribe) are keyed by per-purpose keys derived from it (``derive_key``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BASE62 = string.digits + string.ascii_letters
API_KEY_PREFIX = "rs_eml_"


def random_base62(n: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(n))


def new_api_key() -> str:
    """A fresh service API key: ``rs_eml_`` + 32 base62 characters."""
    return API_KEY_PREFIX + random_base62(32)


def new_admin_token() -> str:
    return "pl_adm_" + random_base62(40)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def load_or_create_master_key(configured: str | None, data_dir: Path) -> bytes:
    """Return 32 key bytes from the configured value, else from (or into) ``data_dir/secret.key``."""
    if configured:
        try:
            key = base64.urlsafe_b64decode(configured + "=" * (-len(configured) % 4))
        except ValueError:
            key = b""
        if len(key) != 32:
            # Any other string is accepted too, stretched to a key; users paste passphrases.
            key = hashlib.sha256(configured.encode()).digest()
        return key
    path = Path(data_dir) / "secret.key"
    if path.exists():
        return base64.urlsafe_b64decode(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.urlsafe_b64encode(key).decode())
    return key


def _subkey(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (e.g. ``"tracking"``): keys of different purposes are
    independent, so a token of one kind can never be forged from a signature of another."""
    return _subkey(master, purpose)


def seal(master: bytes, plaintext: bytes, context: str) -> str:
    """Encrypt with AES-256-GCM; ``context`` is bound as associated data (e.g. the owner's id)."""
    nonce = os.urandom(12)
    ct = AESGCM(_subkey(master, "seal")).encrypt(nonce, plaintext, context.encode())
    return "v1:" + base64.urlsafe_b64encode(nonce + ct).decode()


def unseal(master: bytes, sealed: str, context: str) -> bytes:
    """Inverse of ``seal``; raises ``cryptography.exceptions.InvalidTag`` on a wrong key or context."""
    raw = base64.urlsafe_b64decode(sealed.removeprefix("v1:"))
    return AESGCM(_subkey(master, "seal")).decrypt(raw[:12], raw[12:], context.encode())

