"""Parse what comes back: DSNs (RFC 3464), ARF complaints (RFC 5965) and, best effort, the
non-standard bounces some servers still send. Never raises on any input: unknown input is
a ``Report`` of kind ``unknown``."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import collapse_rfc2231_value
from typing import Any, cast
from email.parser import HeaderParser

HARD_WORDS = re.compile(r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
                        r"mailbox (is )?unavailable|invalid (recipient|mailbox)|address rejected|"
                        r"recipient (address )?rejected|not found|disabled|account.{0,20}(closed|terminated)", re.I)
SOFT_WORDS = re.compile(r"mailbox (is )?full|over quota|quota exceeded|insufficient storage|try again|"
                        r"temporar|greylist|deferred|too many connections|rate limit", re.I)
STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
REPLY_CODE = re.compile(r"\b([45]\d\d)[ -]")
MAX_SCAN = 64 * 1024


@dataclass
class RecipientReport:
    recipient: str | None
    action: str  # failed | delayed | delivered | relayed | expanded | unknown
    status: str | None
    diagnostic: str | None
    smtp_code: int | None = None

    @property
    def bounce_type(self) -> str | None:
        """hard for a permanent failure, soft for a temporary one, None if not a failure."""
        if self.action in ("delivered", "relayed", "expanded"):
            return None
        if self.status and self.status[0] == "5":
            return "hard"
        if self.status and self.status[0] == "4":
            return "soft"
        if self.action == "failed":
            return "hard"
        if self.action == "delayed":
            return "soft"
        return None


@dataclass
class Report:
    kind: str  # bounce | complaint | unknown
    recipients: list[RecipientReport] = field(default_factory=list)
    feedback_type: str | None = None
    original_recipient: str | None = None


def _addr(value: str | None) -> str | None:
    if not value:
        return None
    value = str(value).strip()
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").strip() or None


def _code(diagnostic: str | None) -> int | None:
    if diagnostic:
        m = REPLY_CODE.search(diagnostic + " ")
        if m:
            return int(m.group(1))
    return None


def _text(msg: Message) -> str:
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            try:
                out.append(str(cast(EmailMessage, part).get_content()))  # policy.default: parts are EmailMessage
            except Exception:
                payload = part.get_payload(decode=True) or b""
                out.append(payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload))
        if sum(len(x) for x in out) > MAX_SCAN:
            break
    return "".join(out)[:MAX_SCAN]


def _delivery_status(part: Message) -> list[RecipientReport]:
    blocks: Any = part.get_payload()
    if isinstance(blocks, str):  # some servers send it as text: parse the header blocks ourselves
        blocks = [HeaderParser().parsestr(b) for b in re.split(r"\r?\n\r?\n", blocks) if b.strip()]
    out = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        if not isinstance(block, Message):
            continue
        rcpt = _addr(block.get("Final-Recipient")) or _addr(block.get("Original-Recipient"))
        if not rcpt and not block.get("Action"):
            continue
        diag = block.get("Diagnostic-Code")
        diag = str(diag).split(";", 1)[-1].strip() if diag else None
        status = str(block.get("Status") or "").strip() or None
        out.append(RecipientReport(rcpt, str(block.get("Action") or "unknown").strip().lower(), status, diag,
                                   _code(diag)))
    return out


def _feedback(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        fields = payload[0]
    else:
        decoded: Any = part.get_payload(decode=True)
        raw = payload if isinstance(payload, str) else (decoded or b"").decode("utf-8", "replace")
        fields = HeaderParser().parsestr(raw)
    return {k.lower(): str(v) for k, v in fields.items()}


def _best_effort(msg: Message) -> Report:
    text = _text(msg)
    status = STATUS.search(text)
    hard, soft = HARD_WORDS.search(text), SOFT_WORDS.search(text)
    if not (status or hard or soft):
        return Report("unknown")
    st = ".".join(status.groups()) if status else ("5.0.0" if hard and not soft else "4.0.0")
    line = next((ln.strip() for ln in text.splitlines() if (status and status.group(0) in ln)
                 or (hard and hard.group(0) in ln) or (soft and soft.group(0) in ln)), None)
    rcpt = re.search(r"<?([A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?", text)
    action = "failed" if st[0] == "5" else "delayed"
    return Report("bounce", [RecipientReport(rcpt.group(1) if rcpt else None, action, st,
                                             line[:500] if line else None, _code(line))])


def parse(raw: bytes) -> Report:
    """Classify one inbound message. Total: any bytes in, a Report out."""
    try:
        msg = message_from_bytes(raw[: 10 * 1024 * 1024], policy=policy.default)
        ctype = msg.get_content_type()
        report_type = (collapse_rfc2231_value(msg.get_param("report-type") or "").lower()
                       if ctype == "multipart/report" else "")
        if ctype == "multipart/report":
            for part in msg.walk():
                sub = part.get_content_type()
                if sub in ("message/delivery-status", "message/global-delivery-status"):
                    recipients = _delivery_status(part)
                    if recipients:
                        return Report("bounce", recipients)
                if sub == "message/feedback-report" or report_type == "feedback-report" and sub == "text/plain" \
                        and "feedback-type" in str(part.get_payload()).lower():
                    f = _feedback(part)
                    if f.get("feedback-type") or sub == "message/feedback-report":
                        return Report("complaint", feedback_type=f.get("feedback-type", "abuse").strip(),
                                      original_recipient=_addr(f.get("original-rcpt-to")))
        return _best_effort(msg)
    except Exception:
        return Report("unknown")
