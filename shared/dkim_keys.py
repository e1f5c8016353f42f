"""DKIM key material: generation, sealing at rest, and the DNS TXT values to publish."""
from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from shared.crypto import random_base62, seal


def generate(master_key: bytes, domain_id: str) -> dict[str, str]:
    """Fresh RSA-2048 and Ed25519 keys; private halves sealed (AES-GCM, bound to the domain id)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    rsa_pub = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_seed = ed_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
    ed_pub = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    suffix = random_base62(6).lower()
    return {
        "rsa_selector": f"plr{suffix}", "rsa_private_sealed": seal(master_key, rsa_pem, domain_id),
        "rsa_public_b64": base64.b64encode(rsa_pub).decode(),
        "ed_selector": f"ple{suffix}", "ed_private_sealed": seal(master_key, ed_seed, domain_id),
        "ed_public_b64": base64.b64encode(ed_pub).decode(),
    }


def txt_value(k: str, public_b64: str) -> str:
    return f"v=DKIM1; k={k}; p={public_b64}"


def split_txt(value: str, size: int = 255) -> list[str]:
    """TXT character-strings are at most 255 bytes; long values are published as several."""
    return [value[i:i + size] for i in range(0, len(value), size)] or [""]
