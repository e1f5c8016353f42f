"""SMTP replies for the pipeline's outcomes (docs/submission.md): the API's refusals keep their text.

HTTP status → reply: 400/403 → ``550 5.7.1`` (permanent: the same message would be refused
again), 429 → ``452 4.7.1`` (temporary: retry later), 503 → ``451 4.3.0`` (the log is down;
nothing was accepted). Reply text is one line: any CR/LF in a detail becomes a space."""
from __future__ import annotations

from pydantic import ValidationError

from services.api.refusal import Refusal
from services.api.validation_errors import first_error

MAX_TEXT = 400  # an SMTP reply line is at most 512 octets


def _line(text: str) -> str:
    return " ".join(str(text).split())[:MAX_TEXT]


def accepted(email_id: str) -> str:
    return f"250 2.0.0 OK {email_id}"


def invalid(exc: ValidationError) -> str:
    """A ``SendEmail`` validation error, worded as the API's 400."""
    return f"550 5.7.1 {_line(first_error(exc.errors()))}"


def refusal(refused: Refusal) -> str:
    """A send step's refusal as a reply: its HTTP meaning decides permanent or temporary."""
    if refused.status == 429:
        return f"452 4.7.1 {_line(refused.text)}"
    if refused.status >= 500:
        return f"451 4.3.0 {_line(refused.text)}"
    return f"550 5.7.1 {_line(refused.text)}"


def throttled(retry_after: int) -> str:
    """AUTH refused while the peer or the account is blocked (services/api/throttle.py); the
    connection is then closed, as ``421`` means."""
    return f"421 4.7.0 too many failed authentications; try again in {retry_after} s"


def too_many_recipients(limit: int) -> str:
    return f"452 4.5.3 too many recipients: at most {limit} per message"


def too_big(limit: int) -> str:
    return f"552 5.3.4 message too big: at most {limit} bytes"


# Enhanced status codes (RFC 3463) for aiosmtpd's own replies, which have none, by reply code.
ENHANCED = {221: "2.0.0", 250: "2.0.0", 251: "2.1.5", 421: "4.3.0", 451: "4.3.0", 500: "5.5.2", 501: "5.5.4",
            502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 530: "5.7.0", 535: "5.7.8", 538: "5.7.11", 550: "5.0.0",
            554: "5.7.0"}


def with_enhanced_code(reply: str) -> str:
    """``reply`` with an enhanced status code after the reply code, unless it has one (or is
    a 220 greeting / 3xx continuation, which carry none)."""
    code, sep, text = reply.partition(" ")
    if not (sep and code.isdigit() and len(code) == 3) or code[0] not in "245" or code == "220":
        return reply
    first = text.split(" ", 1)[0]
    if first.count(".") == 2 and first.replace(".", "").isdigit():
        return reply
    return f"{code} {ENHANCED.get(int(code), code[0] + '.0.0')} {text}"
