"""Address helpers: parse ``Name <a@b>`` / bare forms, validate, normalise (IDN-aware)."""
from __future__ import annotations

from email.headerregistry import Address
from email.utils import getaddresses

import email_validator
from email_validator import EmailNotValidError, validate_email

# Self-hosted and dev setups send from ``*.localhost`` (the default sandbox sender) and
# ``*.test`` names; email-validator refuses those special-use names by default.
email_validator.SPECIAL_USE_DOMAIN_NAMES = [
    d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d not in ("localhost", "test")]

FORBIDDEN_CHARS = ("\r", "\n", "\0")


class AddressError(ValueError):
    pass


def has_forbidden_chars(value: str) -> bool:
    return any(c in value for c in FORBIDDEN_CHARS)


def parse_mailbox(value: str) -> tuple[str, str]:
    """Return ``(display_name, normalized_address)``; raises ``AddressError`` with a reason."""
    if not isinstance(value, str) or not value.strip():
        raise AddressError("must be a non-empty email address")
    if has_forbidden_chars(value):
        raise AddressError("must not contain CR, LF or NUL")
    parsed = getaddresses([value])
    if len(parsed) != 1:
        raise AddressError(f"must be one address, got {value!r}")
    name, addr = parsed[0]
    if not addr or (("<" in value) != ("<" in value and ">" in value)):
        raise AddressError(f"is not a valid address: {value!r}")
    try:
        valid = validate_email(addr, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise AddressError(f"is not a valid address ({exc})") from None
    return name, valid.normalized


def bare(value: str) -> str:
    return parse_mailbox(value)[1]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def format_mailbox(name: str, address: str) -> str:
    """A header-safe ``Name <addr>`` (quoted / encoded as needed by the email package)."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name or "", username=local, domain=domain))
