"""Bounce classification: one set of rules for synchronous SMTP replies and for DSNs.

``classify(smtp_code, reply)`` reads the RFC 3463 enhanced status code first
(``class.subject.detail``; RFC 7372 and RFC 7505 for the newer details) and, when there is
none or it is too generic to say anything (``5.0.0``, ``5.5.0``, ``5.4.1`` …), the reply
text. The result says whether the failure is ``hard`` or ``soft``, why (``bounce_class``,
in the style of Postmark's and SES's bounce types) and whether the recipient is suppressed
at once. Only address-level permanent failures suppress at once: a policy, spam or content
refusal says something about the message or the sender, not about the mailbox, and
suppressing on it would silence a working address. The table is in docs/delivery.md
("Bounce classification"); the real-world replies it is tested on are in
tests/data/bounces/replies.json."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UNKNOWN_RECIPIENT = "unknown_recipient"
BAD_DOMAIN = "bad_domain"
MAILBOX_DISABLED = "mailbox_disabled"
MAILBOX_FULL = "mailbox_full"
MESSAGE_TOO_LARGE = "message_too_large"
SPAM_BLOCK = "spam_block"
AUTH_FAILURE = "auth_failure"
POLICY = "policy"
CONTENT = "content"
TRANSIENT = "transient"
OTHER = "other"

# The classes that say the address itself cannot receive mail: a permanent one suppresses.
ADDRESS_CLASSES = frozenset({UNKNOWN_RECIPIENT, BAD_DOMAIN, MAILBOX_DISABLED})
# A mailbox that is full today may be emptied tomorrow: soft even with a 5xx (as the peers do).
ALWAYS_SOFT = frozenset({MAILBOX_FULL})


@dataclass(frozen=True, slots=True)
class Classification:
    bounce_type: Literal["hard", "soft"]
    bounce_class: str
    suppress: bool  # add the recipient to the suppression list at once


# class.subject.detail, not part of a longer dotted number (an IP address, a version).
ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")

# Details that decide the class by themselves: (subject, detail) → class.
BY_CODE: dict[tuple[int, int], str] = {
    (1, 0): UNKNOWN_RECIPIENT,  # other address status (used for "no such user" by many)
    (1, 1): UNKNOWN_RECIPIENT,  # bad destination mailbox address
    (1, 3): UNKNOWN_RECIPIENT,  # bad destination mailbox address syntax
    (1, 6): UNKNOWN_RECIPIENT,  # mailbox has moved, no forwarding address
    (1, 10): UNKNOWN_RECIPIENT,  # RFC 7505 null MX; Exchange uses it for "RecipientNotFound"
    (1, 2): BAD_DOMAIN,  # bad destination system address
    (1, 7): POLICY,  # bad sender's mailbox address syntax: about us, not the recipient
    (1, 8): POLICY,  # bad sender's system address
    (2, 1): MAILBOX_DISABLED,  # mailbox disabled, not accepting messages
    (2, 2): MAILBOX_FULL,  # mailbox full
    (2, 3): MESSAGE_TOO_LARGE,  # message length exceeds administrative limit
    (3, 4): MESSAGE_TOO_LARGE,  # message too big for system
    **{(7, d): AUTH_FAILURE for d in range(20, 28)},  # RFC 7372: DKIM, SPF, reverse DNS, DMARC (5.7.26)
}
# Subjects whose every other detail belongs to one family; the text picks the class within it.
SECURITY, CONTENT_SUBJECT = 7, 6

_TEXT_RULES: list[tuple[str, re.Pattern]] = [(cls, re.compile(rx, re.I)) for cls, rx in [
    (MAILBOX_FULL, r"mailbox (is )?full|inbox is full|over ?quota|quota (exceeded|full)|exceeded (the |its |their )?"
                   r"(storage|quota)|insufficient (system )?storage|out of storage|mailbox size limit"),
    (MESSAGE_TOO_LARGE, r"message (size )?(is )?too (large|big)|size (limit )?exceed|exceeds? (the )?(maximum|max|fixed)"
                        r"|message size"),
    (AUTH_FAILURE, r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|authentication (checks? )?fail|not authenticated"),
    (CONTENT, r"\bvirus\b|malware|content (rejected|filter)|attachment.{0,30}(not allowed|rejected|blocked)|"
              r"message content|security issue"),
    (SPAM_BLOCK, r"spamhaus|spamcop|barracuda|\b(rbl|dnsbl|ube)s?\b|black ?list|block ?list|blocked|\b(is|are|been) "
                 r"listed (on|in|at)|\bspam\b|reputation|\bjunk\b|\[TSS?\d+\]|bulk mail|\bbanned\b"),
    (BAD_DOMAIN, r"domain (name )?(not found|does ?n[o']t exist|unknown|is not valid)|no such domain|unroutea?ble|"
                 r"host (or domain name )?not found|host unknown|null mx|no mx\b|accepts no mail|"
                 r"name or service not known"),
    (MAILBOX_DISABLED, r"(account|mailbox|user|address)( has been| is| was)? (disabled|deactivated|inactive|"
                       r"suspended|locked|closed|discontinued|terminated|expired)|disabled or discontinued|"
                       r"no longer (active|available|in use|valid)"),
    (UNKNOWN_RECIPIENT, r"user unknown|unknown (user|recipient|address|mailbox)|no such (user|mailbox|recipient|"
                        r"address|account|person)|does ?n[o']t exist|mailbox (is )?unavailable|(mailbox|recipient|"
                        r"address|user) not found|invalid (recipient|mailbox|address|user)|(recipient|address) "
                        r"rejected|does ?n[o']t have an? .{0,40}account|not a valid (user|mailbox|recipient)|"
                        r"unknown local.?part|no mailbox|mailbox name not allowed|could ?n[o']t be found|"
                        r"user not local|not our customer|no longer exists"),
    (POLICY, r"policy|not permitted|not allowed|relay(ing)? (access )?denied|access denied|prohibited|"
             r"administrative|service unavailable|rejected|refused|denied"),
]]

SECURITY_TEXT_CLASSES = frozenset({AUTH_FAILURE, CONTENT, SPAM_BLOCK})
PLAINLY_UNKNOWN = re.compile(r"no such (user|mailbox|recipient)|user unknown|unknown user|user not found|"
                             r"(user|mailbox|recipient|address) does ?n[o']t exist", re.I)

# Reply codes with nothing else to go on (RFC 5321, RFC 7504).
_BARE_CODE: dict[int, tuple[str, bool]] = {
    550: (OTHER, True),  # "mailbox unavailable": overwhelmingly an unknown address (Postmark, SES: hard)
    551: (OTHER, True),  # "user not local"
    553: (OTHER, True),  # "mailbox name not allowed"
    521: (BAD_DOMAIN, True),  # "host does not accept mail"
    556: (BAD_DOMAIN, True),  # "domain does not accept mail"
    552: (MAILBOX_FULL, False),  # "exceeded storage allocation"
}


def _by_text(reply: str, only: frozenset[str] | None = None) -> str | None:
    for cls, rx in _TEXT_RULES:
        if (only is None or cls in only) and rx.search(reply):
            return cls
    return None


def _by_codes(reply: str, codes: list[tuple[int, ...]], hard: bool) -> str | None:
    """The class the first decisive enhanced code gives (the text picks within subjects 6 and 7)."""
    for _, subject, detail in codes:
        if (subject, detail) in BY_CODE:
            cls = BY_CODE[(subject, detail)]
            if cls == UNKNOWN_RECIPIENT and _by_text(reply, frozenset({BAD_DOMAIN})):
                return BAD_DOMAIN  # "5.1.10 … null MX": the domain, not the mailbox
            return cls
        if subject == SECURITY:
            # 5.7.x is a refusal on policy unless the text says which kind; some servers
            # (Yandex: "5.7.1 No such user!") use it for unknown users, said in so many words.
            return (_by_text(reply, SECURITY_TEXT_CLASSES)
                    or (UNKNOWN_RECIPIENT if PLAINLY_UNKNOWN.search(reply) else None)
                    or (POLICY if hard else TRANSIENT))
        if subject == CONTENT_SUBJECT:
            return CONTENT
    return None


def classify(smtp_code: int | None, reply: str | None, permanent: bool | None = None) -> Classification:
    """Classify one failure. ``smtp_code`` is the reply code (None when unknown, e.g. a DSN
    without a Diagnostic-Code); ``reply`` the reply text or, for a DSN, its ``Status`` and
    ``Diagnostic-Code`` joined; ``permanent`` says hard or soft when neither the reply code
    nor an enhanced code does (a DSN's Action: failed / delayed). Total: never raises."""
    reply = (reply or "")[:4000]
    codes = [tuple(map(int, m.groups())) for m in ENHANCED.finditer(reply)]
    if smtp_code is not None and 200 <= smtp_code < 600:
        hard = smtp_code >= 500
    elif codes:
        hard = codes[0][0] == 5
    else:
        hard = True if permanent is None else permanent
    cls = _by_codes(reply, codes, hard) or _by_text(reply)
    if not hard:  # a temporary failure says nothing lasting about the address
        return Classification("soft", TRANSIENT if cls in ADDRESS_CLASSES or cls is None else cls, False)
    suppress = cls in ADDRESS_CLASSES
    if cls is None:
        cls, suppress = _BARE_CODE.get(smtp_code or 550, (OTHER, False))
    bounce_type: Literal["hard", "soft"] = "soft" if cls in ALWAYS_SOFT else "hard"
    return Classification(bounce_type, cls, suppress and bounce_type == "hard")
