"""A small pool of reusable SMTP connections to one host."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time

from services.relay.outcome import DeliveryResult, from_exception, from_reply
from services.relay.senders.smtp_client import CertCheck, SmtpConnection, connect, dot_stuffed
from services.relay.shaping.shaper import Slots, Turn
from shared.addresses import ascii_domain, needs_smtputf8
from shared.consumer_loop import BatchLost, ensure_batch_current
from shared.events import TlsUsed


# RFC 6531 §3.2: a message that needs SMTPUTF8 (a non-ASCII local part, in the envelope or a
# header) must not be sent to a server that does not offer it; it cannot be downgraded.
NO_SMTPUTF8 = DeliveryResult("bounced", 553, "5.6.7 the message needs SMTPUTF8 (an address with a non-ASCII "
                                             "local part) and the receiving server does not offer it")


log = logging.getLogger(__name__)
IDLE_CLOSE = 2.0  # seconds a shaped session stays open idle (well under the lease's TTL)
LEASE_RENEW = 20.0  # seconds between two renewals of a busy session's lease


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
                 context: ssl.SSLContext | None = None, check: CertCheck | None = None, verified: str = "none",
                 slots: Slots | None = None, local_addr: str | None = None):
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password, self.timeout = user, password, timeout
        self.local_hostname = local_hostname or "localhost"
        self.server_hostname = server_hostname  # TLS SNI / name when host is an IP address
        self.local_addr = local_addr  # the source address sessions bind (IP pools)
        self._ctx, self.check, self.verified = context, check, verified
        self._idle: list[SmtpConnection] = []
        self._slots = asyncio.Semaphore(size)
        # shaping (services/relay/shaping/): a provider-wide lease per open session, held while
        # it is idle too (the receiver counts open sessions); sessions idle IDLE_CLOSE seconds close
        self.shared_slots = slots
        self._idle_since: dict[SmtpConnection, float] = {}
        self._leases: dict[SmtpConnection, tuple[str, int, float]] = {}  # session → (lease, messages, renewed)

    def _tls_context(self) -> ssl.SSLContext:
        # built once per pool: loading the CA store costs ~40 ms
        if self._ctx is None:
            self._ctx = ssl.create_default_context()
            if self.tls == "opportunistic":
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        return self._ctx

    async def _connect(self) -> SmtpConnection:
        if self.shared_slots is None:
            return await self._open()
        lease = await self.shared_slots.acquire()
        taken = time.monotonic()  # the lease's clock starts here, not once the session is open
        try:
            conn = await self._open()
        except BaseException:
            await self.shared_slots.release(lease)
            raise
        self._leases[conn] = (lease, 0, taken)
        return conn

    async def _drop(self, conn: SmtpConnection, polite: bool = False) -> None:
        """Close a session and give its lease back."""
        if polite:
            await conn.quit()
        else:
            conn.close()
        held = self._leases.pop(conn, None)
        if held is not None and self.shared_slots is not None:
            await self.shared_slots.release(held[0])

    async def _used(self, conn: SmtpConnection) -> None:
        """One more message over ``conn``: back to idle, or closed at the provider's
        messages-per-connection limit or when this relay holds more than its share of the
        provider's connections (Kafka: a relay joined); its lease renewed now and then."""
        held = self._leases.get(conn)
        if held is None or self.shared_slots is None:
            self._idle.append(conn)
            return
        lease, count, renewed = held
        if count + 1 >= self.shared_slots.per_connection or self.shared_slots.over_share():
            await self._drop(conn, polite=True)
            return
        if time.monotonic() - renewed > LEASE_RENEW:
            if not await self.shared_slots.renew(lease):  # lapsed during a slow transaction: the slot
                await self._drop(conn, polite=True)       # may be another session's now
                return
            renewed = time.monotonic()
        self._leases[conn] = (lease, count + 1, renewed)
        self._idle.append(conn)
        self._idle_since[conn] = time.monotonic()
        asyncio.get_running_loop().call_later(IDLE_CLOSE, self._reap)

    def _reap(self) -> None:
        """Close sessions idle for IDLE_CLOSE seconds: their slots go back to every relay."""
        now = time.monotonic()
        old = [c for c in self._idle if now - self._idle_since.get(c, now) >= IDLE_CLOSE - 0.01]
        for conn in old:
            self._idle.remove(conn)
            self._idle_since.pop(conn, None)
            asyncio.get_running_loop().create_task(self._drop(conn, polite=True))

    async def _open(self) -> SmtpConnection:
        return await connect(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname,
                             tls=self.tls, context=self._tls_context() if self.tls != "none" else None,
                             server_hostname=self.server_hostname, user=self.user, password=self.password,
                             check=self.check, local_addr=self.local_addr)

    def _tls_used(self, conn: SmtpConnection) -> TlsUsed | None:
        session = conn.tls_session()
        return TlsUsed(version=session[0], cipher=session[1], verified=self.verified) if session else None

    async def send(self, mail_from: str, rcpts: list[str], raw: bytes,
                   turn: Turn | None = None) -> dict[str, DeliveryResult]:
        """MAIL, RCPT per recipient, DATA. Addresses were validated upstream; IDN domains go
        out as A-labels; SMTPUTF8 is asked for when an address or a header needs it, and a
        server without it gets nothing (``NO_SMTPUTF8`` for every recipient). ``turn``: awaited
        with the connection in hand, before the transaction (the shaper's start time); a
        session the server closed meanwhile is replaced. Raises ``BatchLost`` instead of
        starting the transaction when the relay's batch is no longer its own (Kafka).

        Long because: one session's use from taking it to giving it back — reuse or connect,
        the turn, the transaction, and each way it ends (a failure, a cancellation, success)
        with what happens to the session and its lease — reads as one sequence here."""
        envelope = [ascii_domain(a) for a in (mail_from, *rcpts)]
        # SMTPUTF8 when an address or a header needs it (bodies are 7-bit: quoted-printable/base64)
        utf8 = needs_smtputf8(*envelope) or not raw.isascii()
        enc = "utf-8" if utf8 else "ascii"
        async with self._slots:
            conn, connecting = None, True
            try:
                while self._idle and not (conn := self._idle.pop()).usable:
                    await self._drop(conn)
                    conn = None
                if conn is not None:
                    self._idle_since.pop(conn, None)
                conn = conn or await self._connect()
                if turn is not None:
                    await turn()
                    if not conn.usable:  # closed by the server while the provider's turn came
                        await self._drop(conn)
                        conn = None
                        conn = await self._connect()
                connecting = False
                ensure_batch_current()  # the last moment a delivery the group gave away can be left out
                if utf8 and "SMTPUTF8" not in conn.extensions:
                    await self._used(conn)
                    return {r: NO_SMTPUTF8 for r in rcpts}
                replies = await conn.transaction(envelope[0].encode(enc), [r.encode(enc) for r in envelope[1:]],
                                                 dot_stuffed(raw), b" SMTPUTF8" if utf8 else b"")
            except BatchLost:  # nothing was sent: the session is as good as before
                if conn is not None:
                    await self._settle(conn)
                raise
            except Exception as exc:  # connection dropped, timeout, refused greeting: same for all
                if conn is not None:
                    await self._drop(conn)
                result = from_exception(exc, self.host, connecting)
                return {r: result for r in rcpts}
            except asyncio.CancelledError:  # a stop: the session closes and its lease goes back now,
                if conn is not None:        # not when it lapses (other relays would wait for its slot)
                    await asyncio.shield(self._drop(conn))
                raise
            tls = self._tls_used(conn)
            await self._settle(conn)
            return {r: dataclasses.replace(from_reply(code, text, self.host), tls=tls) for r, (code, text) in zip(rcpts, replies)}

    async def _settle(self, conn: SmtpConnection) -> None:
        """``_used`` after a transaction, never raising: the server has answered, and its
        replies must reach the ledger (raising here would send the message again). A failure
        of the shared slots (a full disk under the shaping file) closes the session; its lease
        then lapses in the file."""
        try:
            await self._used(conn)
        except asyncio.CancelledError:  # a stop: as in ``send``
            await asyncio.shield(self._drop_quietly(conn))
            raise
        except Exception:
            log.exception("giving an SMTP session back failed after its transaction; the session is closed")
            await self._drop_quietly(conn)

    async def _drop_quietly(self, conn: SmtpConnection) -> None:
        """``_drop``, when the shared slots may fail again: the lease then lapses in the file."""
        try:
            await self._drop(conn)
        except Exception:
            log.warning("giving a lease back failed; it lapses", exc_info=True)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._drop(conn, polite=True) for conn in idle))
