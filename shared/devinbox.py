"""The dev inbox: captures outbound mail in embedded mode (``POSTLINE_DELIVERY=inbox``).

A small SQLite file in the data dir; the relay writes, the API lists (``GET /dev/inbox``)."""
from __future__ import annotations

import asyncio
import builtins
import json
import re
import sqlite3
import threading
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Awaitable, Callable

Mail = dict[str, Any]  # a captured message as the dev inbox API shows it (JSON values)
URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+")
CID_REF = re.compile(r"cid:([^\s\"'<>)]+)")  # an inline part's reference in the HTML (RFC 2392)
INLINE_SHOWN_BYTES = 5 * 1024 * 1024  # inline images a message's dashboard page shows, in all


class DevInbox:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a dev tool: survives a crash, not a power cut
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS mail(id TEXT PRIMARY KEY, received_at REAL, mail_from TEXT, rcpts TEXT, raw BLOB)")

    def _store(self, mail_from: str, rcpts: list[str], raw: bytes) -> str:
        mid = str(uuid.uuid4())
        with self._lock:
            self._db.execute("INSERT INTO mail VALUES (?,?,?,?,?)", (mid, time.time(), mail_from, json.dumps(rcpts), raw))
        return mid

    async def store(self, mail_from: str, rcpts: list[str], raw: bytes) -> str:
        """Keep one delivered message; durable (committed) when it returns."""
        return await asyncio.to_thread(self._store, mail_from, rcpts, raw)

    def list(self, limit: int = 50, to: str | None = None, email_id: str | None = None) -> builtins.list[Mail]:
        """Newest first; ``to`` keeps mail to that envelope recipient, ``email_id`` the mail of
        that Postline email (its ``X-Postline-Id``)."""
        filtered = bool(to or email_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, received_at, mail_from, rcpts, raw FROM mail ORDER BY received_at DESC LIMIT ?",
                (10_000 if filtered else limit,)).fetchall()
        out = []
        for mid, ts, mail_from, rcpts, raw in rows:
            rcpt_list = json.loads(rcpts)
            if to and to.lower() not in [r.lower() for r in rcpt_list]:
                continue
            summary = _summary(mid, ts, mail_from, rcpt_list, message_from_bytes(raw, policy=policy.default))
            if email_id and summary["postline_id"] != email_id:
                continue
            out.append(summary)
        return out[:limit]

    async def wait_list(self, wait: float, keep: Callable[[builtins.list[Mail]], Awaitable[builtins.list[Mail]]] | None = None,
                        **filters: Any) -> builtins.list[Mail]:
        """``list(**filters)``, narrowed by ``await keep(found)`` when given, waiting up to
        ``wait`` seconds for a first match (the relay delivers asynchronously: a script can ask
        for a mail it just caused)."""
        deadline = time.monotonic() + wait
        while True:
            found = await asyncio.to_thread(self.list, **filters)
            if keep is not None and found:
                found = await keep(found)
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.1)

    def message(self, mid: str, with_raw: bool = False, show_inline: bool = False) -> Mail | None:
        """One captured message, decoded: the summary plus ``date``, ``headers`` (name, value
        pairs), ``text`` and ``html`` (the decoded parts, or None), ``attachments`` (file
        names) and ``links`` (every http(s) URL of the text part, then of the HTML's ``href``s,
        first occurrence order) — so a script can follow a link without decoding
        quoted-printable itself. ``with_raw`` adds ``raw``, the source as text.
        ``show_inline``: the HTML's ``cid:`` references to inline images become ``data:`` URLs
        (``inline_images``), for a viewer that loads nothing else (the dashboard's frame)."""
        found = self._parsed(mid)
        if found is None:
            return None
        summary, msg, raw = found
        text, html = _part(msg, "plain"), _part(msg, "html")
        links = URL_IN_TEXT.findall(text or "") + _hrefs(html or "")
        if show_inline and html is not None:
            images = inline_images(msg)
            html = CID_REF.sub(lambda m: images.get(m.group(1), m.group(0)), html)
        out = {**summary, "date": str(msg["Date"] or ""),
               "headers": [[k, str(v)] for k, v in msg.items()], "text": text, "html": html,
               "attachments": [a.get_filename() or "(unnamed)" for a in msg.iter_attachments()],
               "links": list(dict.fromkeys(links))}
        if with_raw:
            out["raw"] = raw.decode("utf-8", errors="replace")
        return out

    def summary(self, mid: str) -> Mail | None:
        """One captured message's summary (as ``list`` gives it), or None."""
        found = self._parsed(mid)
        return found[0] if found else None

    def _parsed(self, mid: str) -> tuple[Mail, EmailMessage, bytes] | None:
        with self._lock:
            row = self._db.execute("SELECT id, received_at, mail_from, rcpts, raw FROM mail WHERE id=?", (mid,)).fetchone()
        if row is None:
            return None
        msg = message_from_bytes(row[4], policy=policy.default)
        return _summary(row[0], row[1], row[2], json.loads(row[3]), msg), msg, row[4]

    def raw(self, mid: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT raw FROM mail WHERE id=?", (mid,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()


def _summary(mid: str, ts: float, mail_from: str, rcpts: list[str], msg: EmailMessage) -> Mail:
    return {"id": mid, "received_at": ts, "mail_from": mail_from, "rcpt_to": rcpts,
            "from": str(msg["From"] or ""), "to": str(msg["To"] or ""), "subject": str(msg["Subject"] or ""),
            "message_id": str(msg["Message-ID"] or ""), "postline_id": str(msg["X-Postline-Id"] or "")}


def inline_images(msg: EmailMessage) -> dict[str, str]:
    """Content-ID → ``data:`` URL of the message's inline images (``image/*`` parts with a
    Content-ID), up to ``INLINE_SHOWN_BYTES`` of them in all."""
    import base64

    found, budget = {}, INLINE_SHOWN_BYTES
    for part in msg.walk():
        cid = str(part.get("Content-ID") or "").strip().removeprefix("<").removesuffix(">")
        if not cid or part.get_content_maintype() != "image":
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and len(data) <= budget:
            budget -= len(data)
            found[cid] = f"data:{part.get_content_type()};base64,{base64.b64encode(data).decode()}"
    return found


def _part(msg: EmailMessage, subtype: str) -> str | None:
    part = msg.get_body((subtype,))
    return part.get_content() if part is not None else None


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.found += [v for k, v in attrs if k == "href" and v and v.lower().startswith(("http://", "https://"))]


def _hrefs(html: str) -> list[str]:
    parser = _Hrefs()
    parser.feed(html)
    parser.close()
    return parser.found
