"""Address helpers: parse ``Name <a@b>`` / bare forms, validate, normalise (IDN-aware)."""
from __future__ import annotations

from email.headerregistry import Address
import re
from email.utils import getaddresses
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

# Self-hosted and dev setups send from ``*.localhost`` (the default sandbox sender) and
# ``*.test`` names; email-validator refuses those special-use names by default.
email_validator.SPECIAL_USE_DOMAIN_NAMES = [
    d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES if d not in ("localhost", "test")]

# CR, LF, NUL and every other character str.splitlines() breaks on: the email package
# folds headers with splitlines, so U+2028 or U+0085 in a header value would start a new
# header line on the wire (header injection) on the Python versions we run on.
FORBIDDEN_CHARS = ("\r", "\n", "\0", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


class AddressError(ValueError):
    pass


def has_forbidden_chars(value: str) -> bool:
    return any(c in value for c in FORBIDDEN_CHARS)


def parse_mailbox(value: str) -> tuple[str, str]:
    """Return ``(display_name, normalized_address)``; raises ``AddressError`` with a reason."""
    if not isinstance(value, str) or not value.strip():
        raise AddressError("must be a non-empty email address")
    return _parse_mailbox(value)


# A bare ASCII address in the common form: dot-atom local part, lowercase-able hostname labels
# without "--" (email-validator's Punycode rule), an alphabetic TLD, a local part that is not an
# RFC 2142 role name (info@, postmaster@: email-validator lowercases those). email-validator would
# accept every such address (lengths checked apart) and return it with its domain lowercased;
# tests/shared/test_addresses.py holds the two to the same answers on generated addresses.
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})\Z")


def _plain_address(value: str) -> str | None:
    """``value`` as email-validator would normalize it, when it is a plain bare address it
    would accept (~4 µs instead of ~67: a send's recipients are rarely seen twice); else None."""
    m = _PLAIN.match(value)
    if m is None or "--" in (domain := m.group(1)) or len(value) > 254 or value.index("@") > 64:
        return None
    local = value[:value.index("@")]
    if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:  # RFC 2142 role names: email-validator lowercases them
        return None
    domain = domain.lower()
    if any(domain == s or domain.endswith("." + s) for s in email_validator.SPECIAL_USE_DOMAIN_NAMES):
        return None
    return f"{local}@{domain}"


# A pure function of the string costing ~0.07 ms (email-validator, getaddresses) unless it is
# plain; one send parses the same From and To two or three times (schema, sending steps) and
# senders repeat their From. Refusals raise, so they are never cached.
@lru_cache(maxsize=16384)
def _parse_mailbox(value: str) -> tuple[str, str]:
    if (plain := _plain_address(value)) is not None:
        return "", plain
    return _parse_mailbox_fully(value)


def _parse_mailbox_fully(value: str) -> tuple[str, str]:
    if has_forbidden_chars(value):
        raise AddressError("must not contain line breaks or NUL")
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
    # IDN domains travel as A-labels (xn--…), so only a non-ASCII local part needs SMTPUTF8
    return name, valid.ascii_email or valid.normalized


def bare(value: str) -> str:
    return parse_mailbox(value)[1]


_SIMPLE_NAMED = re.compile(r"^([^\"<>,@\\]*)<([^<>\s\"]+@[^<>\s\"]+)>\Z")


@lru_cache(maxsize=65536)
def split_mailbox(value: str) -> tuple[str, str]:
    """``(name, address)`` of an address the API already validated: no validation here,
    because the relay's hot path would pay ~0.2 ms per email-validator call and ~0.1 ms per
    ``getaddresses`` call (it parses twice). Plain forms take a fast path."""
    value = value.strip()
    if "<" not in value and '"' not in value and "," not in value and " " not in value:
        return "", value
    m = _SIMPLE_NAMED.match(value)
    if m:
        return m.group(1).strip(), m.group(2)
    name, addr = getaddresses([value])[0]
    return name, addr


def split_bare(value: str) -> str:
    return split_mailbox(value)[1]


def message_id(email_id: str, domain: str) -> str:
    """The Message-ID of a Postline message: ``<email id@domain>``, the domain its sending
    one (or the sandbox sender's). The relay, the SMTP submission door and ``GET /emails/{id}``
    all write it this way, so the API can say it before the message is built."""
    return f"<{email_id}@{domain}>"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def format_mailbox(name: str, address: str) -> str:
    """A header-safe ``Name <addr>`` (quoted / encoded as needed by the email package)."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name or "", username=local, domain=domain))


def needs_smtputf8(*addresses: str) -> bool:
    return any(not a.isascii() for a in addresses)


@lru_cache(maxsize=4096)
def _a_labels(domain: str) -> str:
    import idna

    return idna.encode(domain, uts46=True).decode("ascii")


def ascii_domain(address: str) -> str:
    """``address`` with an internationalised domain as A-labels (``u@xn--bcher-kva.example``)
    when that makes it ASCII, so every server accepts it without SMTPUTF8. A non-ASCII
    local part cannot be converted (the address needs SMTPUTF8, which carries U-labels as
    they are): such an address comes back unchanged, as do ASCII ones, cheaply."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{_a_labels(domain)}"
    except ValueError:  # idna.IDNAError: validated upstream, so only a name the API let through unconverted
        return address
