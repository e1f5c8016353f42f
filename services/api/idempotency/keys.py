"""What an Idempotency-Key request is identified by: a valid key, its email id, its body's hash."""
from __future__ import annotations

import hashlib
import json
import uuid

from services.api.refusal import Refusal

_NS = uuid.UUID("0b6f3c56-5d3e-4a55-8d0f-2f1c9e7a4b11")


def check_key(key: str) -> Refusal | None:
    """A 400 refusal unless ``key`` is 1 to 255 printable characters (an empty key would be
    one key for every send of the service)."""
    if not key or len(key) > 255 or not key.isprintable():
        return Refusal(400, "Idempotency-Key: 1 to 255 printable characters", code="invalid_idempotency_key")
    return None


def email_id_for(service_id: str, key: str, since: float | None, body_hash: str) -> str:
    """The email id of a keyed send: the same on every process for one body within one use of
    the key (``since``, claims.py), so a request repeated after a lease ran out (its holder
    died, or was too slow) or after an unconfirmed answer is the same message to every
    consumer; another body, or the key used again after 24 h, is another message. None: a
    claim recorded before ``since`` was kept (the id it had then, from the key alone)."""
    name = f"{service_id}|{key}" if since is None else f"{service_id}|{key}|{since!r}|{body_hash}"
    return str(uuid.uuid5(_NS, name))


def item_email_id(batch_email_id: str, index: int) -> str:
    """The email id of item ``index`` of a keyed batch whose ``email_id_for`` is ``batch_email_id``."""
    return str(uuid.uuid5(_NS, f"{batch_email_id}|{index}"))


def body_hash(raw: bytes) -> str:
    """Hash of the JSON body, insensitive to key order and whitespace."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()
