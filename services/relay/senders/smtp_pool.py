"""A small pool of reusable SMTP connections to one host (aiosmtplib)."""
from __future__ import annotations

import asyncio
import ssl

import aiosmtplib

from services.relay.outcome import DeliveryResult, from_exception, from_reply
from shared.addresses import needs_smtputf8


class SmtpPool:
    """At most ``size`` connections to ``host:port``; a connection that errs is dropped.

    ``tls``: ``none``; ``starttls`` (required); ``opportunistic`` (STARTTLS when offered,
    certificate not verified, as MX-to-MX mail does); ``tls`` (implicit TLS)."""

    def __init__(self, host: str, port: int, size: int = 8, tls: str = "none",
                 user: str | None = None, password: str | None = None, timeout: float = 30.0,
                 local_hostname: str | None = None, server_hostname: str | None = None):
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password, self.timeout = user, password, timeout
        self.local_hostname = local_hostname
        self.server_hostname = server_hostname  # TLS SNI / name when host is an IP address
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> aiosmtplib.SMTP:
        ctx = ssl.create_default_context()
        if self.tls == "opportunistic":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout, use_tls=self.tls == "tls",
            start_tls=False, tls_context=ctx, local_hostname=self.local_hostname)
        await client.connect()
        if self.tls == "starttls" or (self.tls == "opportunistic" and client.supports_extension("starttls")):
            await client.starttls(tls_context=ctx, server_hostname=self.server_hostname or self.host)
        if self.user:
            await client.login(self.user, self.password or "")
        return client

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> dict[str, DeliveryResult]:
        async with self._slots:
            client = None
            try:
                client = self._idle.pop() if self._idle else await self._connect()
                if not client.is_connected:
                    client = await self._connect()
                options = ["SMTPUTF8"] if needs_smtputf8(mail_from, *rcpts) else []
                errors, reply = await client.sendmail(mail_from, rcpts, raw, mail_options=options)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._release(client)
                return {e.recipient: from_reply(e.code, e.message, self.host) for e in exc.recipients}
            except Exception as exc:  # connection dropped, timeout, 4xx/5xx on MAIL/DATA: same for all
                await self._discard(client)
                result = from_exception(exc, self.host)
                return {r: result for r in rcpts}
            self._release(client)
            ok = from_reply(250, reply, self.host)
            return {r: (from_reply(*errors[r], self.host) if r in errors else ok) for r in rcpts}

    def _release(self, client) -> None:
        if client is not None and client.is_connected:
            self._idle.append(client)

    async def _discard(self, client) -> None:
        if client is not None:
            client.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await asyncio.wait_for(client.quit(), 2)
            except Exception:
                client.close()
