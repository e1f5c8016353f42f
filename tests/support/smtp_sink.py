"""A real SMTP server (aiosmtpd) on loopback that records what it receives and can be
scripted to answer 2xx/4xx/5xx per recipient or for DATA, stall, or drop mid-DATA; it can
advertise PIPELINING, offer or require STARTTLS, and require AUTH."""
from __future__ import annotations

import datetime
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support.broker import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = field(default_factory=time.time)
    tls: bool = False
    login: str | None = None
    peer: str | None = None  # the sender's address (its source IP)
    helo: str | None = None  # the name it greeted with (EHLO)

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


class _Handler:
    def __init__(self, sink: "SmtpSink"):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        self.sink.ehlo_count += 1
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.sink.mail_replies.get(address.lower())
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.data_delay and self.sink.one_at_a_time:  # a server that takes data_delay per message
            import asyncio

            self.sink.serial = self.sink.serial or asyncio.Lock()  # made on the controller's own loop
            async with self.sink.serial:
                await asyncio.sleep(self.sink.data_delay)
        elif self.sink.data_delay:
            import asyncio

            await asyncio.sleep(self.sink.data_delay)
        if self.sink.drop_data:
            session.transport.close() if hasattr(session, "transport") else server.transport.close()
            return "421 closing"
        reply = self.sink.next_data_reply()
        if reply.startswith("2"):
            with self.sink.lock:
                login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
                self.sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                                   tls=session.ssl is not None, login=login,
                                                   peer=session.peer[0] if session.peer else None,
                                                   helo=session.host_name))
        return reply


class _Authenticator:
    def __init__(self, user: str, password: str):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (self.user, self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def self_signed_context() -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    with tempfile.TemporaryDirectory() as d:
        cert_path, key_path = f"{d}/cert.pem", f"{d}/key.pem"
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


class _CountingSMTP(SMTP):
    """Counts the sessions open at once (what a provider limits a sender's connections by). A
    session ends when the client says QUIT (or the connection is lost first): the moment the
    sender is done with it, not when this server's loop gets round to the closed socket."""

    def __init__(self, sink: "SmtpSink", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sink, self.counted, self.source = sink, False, ""

    def connection_made(self, transport):
        self.source = (transport.get_extra_info("peername") or ("",))[0]
        with self.sink.lock:
            self.sink.sessions_open += 1
            self.sink.max_sessions = max(self.sink.max_sessions, self.sink.sessions_open)
            open_here = self.sink.sessions_by_peer[self.source] = self.sink.sessions_by_peer.get(self.source, 0) + 1
            self.sink.max_sessions_by_peer[self.source] = max(self.sink.max_sessions_by_peer.get(self.source, 0), open_here)
            self.counted = True
        super().connection_made(transport)

    def _ended(self) -> None:
        with self.sink.lock:
            if self.counted:
                self.sink.sessions_open -= 1
                self.sink.sessions_by_peer[self.source] -= 1
                self.counted = False

    async def smtp_QUIT(self, arg):
        self._ended()
        return await super().smtp_QUIT(arg)

    def connection_lost(self, exc):
        self._ended()
        super().connection_lost(exc)


class _Controller(Controller):
    def __init__(self, sink: "SmtpSink", *args, **kwargs):
        self.sink = sink
        super().__init__(*args, **kwargs)

    def factory(self):
        return _CountingSMTP(self.sink, self.handler, **self.SMTP_kwargs)


class SmtpSink:
    def __init__(self, data_replies: list[str] | None = None, rcpt_replies: dict[str, str] | None = None,
                 data_delay: float = 0.0, drop_data: bool = False, port: int | None = None,
                 pipelining: bool = False, starttls: str | None = None, login: tuple[str, str] | None = None,
                 mail_replies: dict[str, str] | None = None, smtputf8: bool = True, one_at_a_time: bool = False,
                 host: str = "127.0.0.1", tls_context: ssl.SSLContext | None = None):
        """``one_at_a_time``: messages take ``data_delay`` each in turn (a slow server's
        throughput), not all at once; ``starttls``: None, ``"offer"`` or ``"require"`` (self-signed certificate);
        ``login``: (user, password) the server requires (AUTH PLAIN/LOGIN); ``smtputf8``:
        whether EHLO offers SMTPUTF8 (RFC 6531); ``host``: the loopback address to listen on
        (MX tests give each destination its own; several sinks may share one port); ``tls_context``:
        the server certificate of ``starttls`` instead of a self-signed one.
        ``max_sessions``: the most sessions that were open at once (``max_sessions_by_peer``: per source address)."""
        self.host, self.port = host, port or free_port()
        self.sessions_open = self.max_sessions = 0
        self.sessions_by_peer: dict[str, int] = {}  # source address → sessions open now
        self.max_sessions_by_peer: dict[str, int] = {}  # source address → the most open at once
        self.pipelining, self.ehlo_count = pipelining, 0
        self.data_replies = list(data_replies or [])
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.mail_replies = {k.lower(): v for k, v in (mail_replies or {}).items()}
        self.data_delay, self.drop_data = data_delay, drop_data
        self.one_at_a_time, self.serial = one_at_a_time, None
        self.received: list[Received] = []
        self.lock = threading.Lock()
        tls = {"tls_context": tls_context or self_signed_context(),
               "require_starttls": starttls == "require"} if starttls else {}
        auth = {"authenticator": _Authenticator(*login), "auth_required": True,
                "auth_require_tls": False} if login else {}
        self.controller = _Controller(self, _Handler(self), hostname=host, port=self.port,
                                     data_size_limit=50 * 1024 * 1024, enable_SMTPUTF8=smtputf8, **tls, **auth)

    def next_data_reply(self) -> str:
        with self.lock:
            if len(self.data_replies) > 1:
                return self.data_replies.pop(0)
            return self.data_replies[0] if self.data_replies else "250 2.0.0 OK queued"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [r for r in self.received if predicate(r)]
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError("the SMTP sink did not receive the expected message in time")

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]
