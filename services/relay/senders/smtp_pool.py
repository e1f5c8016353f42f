"""A small pool of reusable SMTP connections to one host."""
from __future__ import annotations

import asyncio
import dataclasses
import ssl

from services.relay.outcome import DeliveryResult, from_exception, from_reply
from services.relay.senders.smtp_client import CertCheck, SmtpConnection, connect, dot_stuffed
from shared.addresses import ascii_domain, needs_smtputf8
from shared.events import TlsUsed


# RFC 6531 §3.2: a message that needs SMTPUTF8 (a non-ASCII local part, in the envelope or a
# header) must not be sent to a server that does not offer it; it cannot be downgraded.
NO_SMTPUTF8 = DeliveryResult("bounced", 553, "5.6.7 the message needs SMTPUTF8 (an address with a non-ASCII "
                                             "local part) and the receiving server does not offer it")


class SmtpPool:
    """At most ``size`` connections to ``host:port``; a connection that errs is dropped.

    ``tls``: ``none``; ``starttls`` (required); ``opportunistic`` (STARTTLS when offered,
    certificate not verified, as MX-to-MX mail does); ``tls`` (implicit TLS). ``context``
    and ``check`` replace the default TLS context and add a certificate check after the
    handshake (services/relay/senders/tls_policy.py); ``verified`` is what vouched for the
    certificate, reported with the TLS of each outcome (``DeliveryResult.tls``)."""

    def __init__(self, host: str, port: int, size: int = 8, tls: str = "none",
                 user: str | None = None, password: str | None = None, timeout: float = 30.0,
                 local_hostname: str | None = None, server_hostname: str | None = None,
                 context: ssl.SSLContext | None = None, check: CertCheck | None = None, verified: str = "none"):
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password, self.timeout = user, password, timeout
        self.local_hostname = local_hostname or "localhost"
        self.server_hostname = server_hostname  # TLS SNI / name when host is an IP address
        self._ctx, self.check, self.verified = context, check, verified
        self._idle: list[SmtpConnection] = []
        self._slots = asyncio.Semaphore(size)

    def _tls_context(self) -> ssl.SSLContext:
        # built once per pool: loading the CA store costs ~40 ms
        if self._ctx is None:
            self._ctx = ssl.create_default_context()
            if self.tls == "opportunistic":
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        return self._ctx

    async def _connect(self) -> SmtpConnection:
        return await connect(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname,
                             tls=self.tls, context=self._tls_context() if self.tls != "none" else None,
                             server_hostname=self.server_hostname, user=self.user, password=self.password,
                             check=self.check)

    def _tls_used(self, conn: SmtpConnection) -> TlsUsed | None:
        session = conn.tls_session()
        return TlsUsed(version=session[0], cipher=session[1], verified=self.verified) if session else None

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, DeliveryResult]:
        """MAIL, RCPT per recipient, DATA. Addresses were validated upstream; IDN domains go
        out as A-labels; SMTPUTF8 is asked for when an address or a header needs it, and a
        server without it gets nothing (``NO_SMTPUTF8`` for every recipient)."""
        envelope = [ascii_domain(a) for a in (mail_from, *rcpts)]
        # SMTPUTF8 when an address or a header needs it (bodies are 7-bit: quoted-printable/base64)
        utf8 = needs_smtputf8(*envelope) or not raw.isascii()
        enc = "utf-8" if utf8 else "ascii"
        async with self._slots:
            conn, connecting = None, True
            try:
                while self._idle and not (conn := self._idle.pop()).usable:
                    conn = None
                conn = conn or await self._connect()
                connecting = False
                if utf8 and "SMTPUTF8" not in conn.extensions:
                    self._idle.append(conn)
                    return {r: NO_SMTPUTF8 for r in rcpts}
                replies = await conn.transaction(envelope[0].encode(enc), [r.encode(enc) for r in envelope[1:]],
                                                 dot_stuffed(raw), b" SMTPUTF8" if utf8 else b"")
            except Exception as exc:  # connection dropped, timeout, refused greeting: same for all
                if conn is not None:
                    conn.close()
                result = from_exception(exc, self.host, connecting)
                return {r: result for r in rcpts}
            self._idle.append(conn)
            tls = self._tls_used(conn)
            return {r: dataclasses.replace(from_reply(code, text, self.host), tls=tls) for r, (code, text) in zip(rcpts, replies)}

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(conn.quit() for conn in idle))
