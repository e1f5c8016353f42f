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
        self._ctx: ssl.SSLContext | None = None
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    def _tls_context(self) -> ssl.SSLContext:
        # built once per pool: loading the CA store costs ~40 ms
        if self._ctx is None:
            self._ctx = ssl.create_default_context()
            if self.tls == "opportunistic":
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        return self._ctx

    async def _connect(self) -> aiosmtplib.SMTP:
        ctx = self._tls_context() if self.tls != "none" else None
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout, use_tls=self.tls == "tls",
            start_tls=False, tls_context=ctx, local_hostname=self.local_hostname)
        await client.connect()
        await client.ehlo()
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
                results = await self._transaction(client, mail_from, rcpts, raw)
            except Exception as exc:  # connection dropped, timeout, 4xx/5xx on MAIL/DATA: same for all
                await self._discard(client)
                result = from_exception(exc, self.host)
                return {r: result for r in rcpts}
            self._release(client)
            return results

    async def _transaction(self, client: aiosmtplib.SMTP, mail_from: str, rcpts: list[str],
                           raw: bytes) -> dict[str, DeliveryResult]:
        """MAIL, RCPT per recipient, DATA. Addresses were validated upstream, so they go out
        as they are (aiosmtplib's own helpers re-parse every address: ~0.1 ms each)."""
        utf8 = needs_smtputf8(mail_from, *rcpts)
        enc = "utf-8" if utf8 else "ascii"
        reply = await client.execute_command(b"MAIL", b"FROM:<" + mail_from.encode(enc) + b">",
                                             *([b"SMTPUTF8"] if utf8 else []))
        if reply.code != 250:
            await client.execute_command(b"RSET")
            return {r: from_reply(reply.code, reply.message, self.host) for r in rcpts}
        out: dict[str, DeliveryResult] = {}
        accepted = []
        for r in rcpts:
            reply = await client.execute_command(b"RCPT", b"TO:<" + r.encode(enc) + b">")
            if reply.code in (250, 251):
                accepted.append(r)
            else:
                out[r] = from_reply(reply.code, reply.message, self.host)
        if not accepted:
            await client.execute_command(b"RSET")
            return out
        try:
            reply = await client.data(raw)
        except aiosmtplib.SMTPDataError as exc:
            reply = exc
        for r in accepted:
            out[r] = from_reply(reply.code, reply.message, self.host)
        return out

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
