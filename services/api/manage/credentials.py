"""A user's secrets: the password (argon2id, argon2-cffi's RFC 9106 low-memory profile), the
optional TOTP second factor (RFC 6238 via pyotp: 6 digits, 30 s, one step of clock drift
either way, a code accepted once) and its recovery codes (10, shown once, stored hashed,
each usable once).

Hashing a password costs ~50 ms of CPU: it runs in a worker thread, never on the event
loop. A sign-in with an unknown address verifies against a dummy hash all the same, so the
answer's timing does not tell which addresses have accounts."""
from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared import events as ev
from shared.crypto import hash_secret, seal, unseal

HASHER = PasswordHasher()  # argon2id (the library's default type), RFC 9106 low-memory parameters
MIN_PASSWORD = 12
MAX_PASSWORD = 256  # argon2 hashes anything, but a megabyte "password" is a CPU bill, not a secret
RECOVERY_CODES = 10
ISSUER = "Postline"
# An unknown address is verified against this: the hash of a random secret that was thrown away,
# made with HASHER's parameters (a test holds them equal), so it costs what a real check does.
# Written out rather than hashed at import, which cost every API process ~0.13 s of CPU at start.
DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$WPcho2zyCEoV1L93xWMGaQ$phJmJnym8LiKKOw9QRbtBTPyWcSx+/affzxEvbhJJ+s"


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be set (its length), or None."""
    if len(password) < MIN_PASSWORD:
        return f"password: at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"password: at most {MAX_PASSWORD} characters"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


async def password_ok(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored`` (None: verified against a dummy, then False)."""
    def check() -> bool:
        try:
            return HASHER.verify(stored or DUMMY_HASH, password[:MAX_PASSWORD]) and stored is not None
        except (VerificationError, InvalidHashError):
            return False
    return await asyncio.to_thread(check)


# ------------------------------------------------------------ TOTP
def new_totp_secret() -> str:
    return pyotp.random_base32()


def seal_totp(master: bytes, user: ev.UserSaved, secret: str) -> str:
    return seal(master, secret.encode(), f"totp:{user.user_id}")


def totp_uri(user: ev.UserSaved, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def totp_step(master: bytes, sealed: str, user: ev.UserSaved, code: str, last_step: int) -> int | None:
    """The time step ``code`` belongs to when it is valid for the sealed secret and newer than
    ``last_step`` (a code works once), else None."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(unseal(master, sealed, f"totp:{user.user_id}").decode())
    now = datetime.now(timezone.utc)
    for drift in (0, -1, 1):
        at = now + timedelta(seconds=drift * totp.interval)
        step = totp.timecode(at)
        if step > last_step and secrets.compare_digest(totp.at(at), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like ``k3p9-x2mf-7qtd``: shown once, stored with ``hash_secret``."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return ["-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
            for _ in range(RECOVERY_CODES)]


def recovery_hash(code: str) -> str:
    return hash_secret(code.strip().lower())
