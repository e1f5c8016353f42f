"""The SMTP submission listener (docs/submission.md), run by the api role on POSTLINE_SUBMISSION_PORT.

A session: EHLO → STARTTLS → AUTH PLAIN/LOGIN (password = a service API key, any user
name) → MAIL → RCPT (at most 50) → DATA. DATA is a door of the accept core (services/api/accept.py), like ``POST /emails``:

parse (message.py) → validate (the API's ``SendEmail``) → accept (prepare: mode, sandbox rules,
suppression; finalize the bytes; rate limit + append, durable; remember) → 250 with the
email id. Every refusal is an SMTP reply (replies.py); nothing is accepted before the
request is on the log.

AUTH is offered only after STARTTLS, except to a loopback peer (``auth_needs_tls``). Wrong
keys are counted per peer address and key prefix across connections and processes
(services/api/throttle.py); while the peer (or the account, for a peer that failed
recently) is blocked, AUTH is answered ``421 4.7.0`` and the connection closed, whatever
the key."""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import ssl
import time
from typing import Any, AnyStr, Callable, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax
from pydantic import ValidationError

from services.api.auth import ServiceCaller, count_failure, key_owner
from services.api.throttle import Blocked, account_of, source_of
from services.api.schemas import MAX_MESSAGE_BYTES, MAX_RECIPIENTS, SendEmail
from services.api.refusal import Refusal
from services.api.accept import Finish, accept
from services.api.sending import Draft
from services.api.submission import message, replies
from services.api.submission.tls import server_context
from shared import events as ev
from shared.control.errors import ControlBehind
from shared.addresses import AddressError, domain_of, message_id, parse_mailbox, split_bare
from services.api.context import ApiContext

log = logging.getLogger(__name__)
# aiosmtpd sets its deprecated Session.login_data on every AUTH and warns about its own call
logging.getLogger("mail.log").addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
# The API takes up to 10 MB of content; its MIME form (base64 lines, headers) is a little larger.
MAX_DATA_BYTES = MAX_MESSAGE_BYTES + MAX_MESSAGE_BYTES // 10
# AUTH attempts per connection (then 421 and the connection closes); other commands unbounded,
# since a client may send thousands of messages over one connection.
CALL_LIMITS = {"AUTH": 5, "*": 2**62}


def auth_needs_tls(peer: Any) -> bool:
    """False only for a loopback peer (``127.0.0.0/8``, ``::1``, IPv4-mapped loopback): there
    the password cannot be sniffed on the wire. Unknown or unparseable peers need TLS."""
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except (TypeError, ValueError, IndexError):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_loopback


class SubmissionSMTP(SMTP):
    """aiosmtpd's session with Postline's rules: the loopback exception to AUTH-after-TLS,
    and an enhanced status code on every reply (aiosmtpd's own replies have none)."""

    _in_greeting = False
    failed_key: str | None = None  # the authenticator's finding on the AUTH being answered
    blocked: Blocked | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.session is not None  # aiosmtpd made it in connection_made
        self._auth_require_tls = auth_needs_tls(self.session.peer)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_greeting = True  # RFC 2034: EHLO and HELO replies carry no enhanced codes
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_greeting = False

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        """Catch up with the control log before the key is checked (read-your-writes: a key
        created a moment ago on another API process is known); 454 if this process cannot."""
        if not await self.event_handler.caught_up():
            return await self.push("454 4.7.0 temporary authentication failure; try again later")
        handler: SubmissionHandler = self.event_handler
        assert self.session is not None  # made in connection_made
        self.failed_key, self.blocked = None, None
        await super().smtp_AUTH(arg)  # ``authenticate`` sets one of them for a wrong key
        if self.failed_key is not None:
            await handler.count_failure(self.session, self.failed_key)
        if self.blocked is not None:
            await self.push(replies.throttled(self.blocked.retry_after))
            assert self.transport is not None  # a command is being answered: the connection is open
            self.transport.close()

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_greeting = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_greeting = False

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and not self._in_greeting:
            code = status[:3]  # a 552 is aiosmtpd's size refusal: ``factory`` always sets the limit
            return await super().push(replies.too_big(cast(int, self.data_size_limit)) if code == "552"
                                      else replies.with_enhanced_code(status))
        await super().push(status)


class SubmissionHandler:
    """aiosmtpd hooks. The session keeps the key's hash only: the key is looked up again for
    every message, so a revoked key or a disabled service stops sending at once."""

    def __init__(self, runtime: ApiContext) -> None:
        self.rt = runtime

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: object) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        key = auth_data.password.decode("utf-8", "replace").strip()
        caller = key_owner(self.rt.control.state, key)
        if caller is not None:  # a right key works while its address is blocked: it cannot be guessed (services/api/auth.py ``checked``)
            return AuthResult(success=True, auth_data=caller.key.key_hash)
        if blocked := self.blocked(session, key):  # SubmissionSMTP.smtp_AUTH answers 421, counts nothing
            if isinstance(server, SubmissionSMTP):
                server.blocked = blocked
            return AuthResult(success=False, handled=True)
        if isinstance(server, SubmissionSMTP):
            server.failed_key = key  # counted once the reply is decided (smtp_AUTH)
        return AuthResult(success=False, handled=False, message="535 5.7.8 invalid API key (the password must be a service API key)")

    def blocked(self, session: Session, key: str | None) -> Blocked | None:
        """Whether the throttle refuses this peer (and ``key``'s account) now."""
        return self.rt.throttle.check(_peer_address(session), account_of(key) if key is not None else None)

    async def count_failure(self, session: Session, key: str) -> None:
        await count_failure(self.rt, "smtp", _peer_address(session), account_of(key))

    async def caught_up(self) -> bool:
        """Read-your-writes before control state is read (``ControlPlane.catch_up``); False
        when this process cannot read the control log up to its end in time."""
        try:
            await self.rt.control.catch_up()
            return True
        except ControlBehind:
            return False

    def caller(self, session: Session) -> ServiceCaller:
        """The service and key record of the session's key; raises ``message.Refused``."""
        state = self.rt.control.state
        rec = state.api_key_by_hash(session.auth_data) if isinstance(session.auth_data, str) else None
        svc = state.services.get(rec.service_id) if rec else None
        if rec is None or svc is None:
            raise message.Refused("535 5.7.8 the API key was revoked")
        return ServiceCaller(svc, rec)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads commands in order from a buffer, so pipelined commands just work
        responses[-1:-1] = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if not await self.caught_up():  # each message sees a revocation made elsewhere
            return "451 4.3.0 temporary failure; try again later"
        try:
            svc = self.caller(session).service
        except message.Refused as exc:
            return exc.reply
        if svc.status != "active":
            return "550 5.7.1 the service is disabled"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            _, addr = parse_mailbox(address)
        except AddressError as exc:
            return f"501 5.5.4 to: {exc}"
        if any(r.lower() == addr.lower() for r in envelope.rcpt_tos):
            return "250 2.1.5 OK (duplicate)"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return replies.too_many_recipients(MAX_RECIPIENTS)
        envelope.rcpt_tos.append(addr)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        start, svc = time.perf_counter(), None
        try:
            who = self.caller(session)
            svc = who.service
            sub = message.parse(cast(bytes, envelope.original_content), envelope.rcpt_tos)  # aiosmtpd set it before DATA's hook
            body = SendEmail.model_validate(sub.send)
            reply = await self.submit(who, body, sub)
        except message.Refused as exc:
            reply = exc.reply
        except ValidationError as exc:
            reply = replies.invalid(exc)
        except Exception:
            log.exception("submission failed; the client is told to retry")
            reply = "451 4.3.0 temporary failure; nothing was sent, try again later"
        # one line per message, like the API's access log (never the key or the content)
        log.info("submission", extra={"fields": {
            "service_id": svc.service_id if svc else None, "peer": str(session.peer[0]) if session.peer else None,
            "rcpts": len(envelope.rcpt_tos), "bytes": len(envelope.original_content or b""),
            "reply": " ".join(reply.split(" ", 2)[:2]),  # the codes only: reply texts can name addresses
            "ms": round((time.perf_counter() - start) * 1000, 2)}})
        return reply

    async def submit(self, who: ServiceCaller, body: SendEmail, sub: message.Submitted) -> str:
        """The accept core of ``POST /emails`` with the client's bytes as the message; its
        outcome as a reply (replies.py). A key limited to a domain is held to it as on the API."""
        outcome = await accept(self.rt, who.service, body, "emails", finish=as_written(self.rt, sub), api_key=who.key)
        if isinstance(outcome, Refusal):
            if outcome.cause is not None:
                log.warning("submission: the event log refused the append", exc_info=outcome.cause)
            return replies.refusal(outcome)
        return replies.accepted(outcome.email_id)


def _peer_address(session: Session) -> str:
    return source_of(str(session.peer[0]) if session.peer else None)


def as_written(rt: ApiContext, sub: message.Submitted) -> Finish:
    """The request's last step for a submitted message: the client's MIME, finalized (From,
    Message-ID, Date) and carried as ``raw_mime`` in place of the parsed text."""
    def finish(draft: Draft, req: ev.SendRequested) -> ev.SendRequested:
        id_domain = draft.sending_domain or domain_of(split_bare(rt.settings.sandbox_from))
        raw = message.finalize(sub, draft.from_, message_id(req.email_id, id_domain), req.time.timestamp())
        return req.model_copy(update={"raw_mime": base64.b64encode(raw).decode(), "text": None, **relay_options(sub)})
    return finish


def relay_options(sub: message.Submitted) -> dict[str, bool]:
    """Tracking fields of the request, where this build has them (docs/submission.md): open
    and click tracking rewrite the HTML the relay builds, so they are off for a message sent
    as its client wrote it; the relay's List-Unsubscribe is left out when the client wrote one."""
    fields = ev.SendRequested.model_fields
    out: dict[str, bool] = {name: False for name in ("track_opens", "track_clicks") if name in fields}
    if "list_unsubscribe" in fields and sub.has("list-unsubscribe"):
        out["list_unsubscribe"] = False
    return out


def factory(runtime: ApiContext, handler: SubmissionHandler, tls_context: ssl.SSLContext) -> Callable[[], SubmissionSMTP]:
    s = runtime.settings
    return lambda: SubmissionSMTP(
        handler, hostname=s.hostname, ident="Postline ESMTP submission", tls_context=tls_context,
        data_size_limit=MAX_DATA_BYTES, enable_SMTPUTF8=True, auth_required=True, auth_require_tls=True,
        authenticator=handler.authenticate, command_call_limit=CALL_LIMITS, timeout=300)


async def serve(runtime: ApiContext, stop: asyncio.Event) -> None:
    """Listen on POSTLINE_HTTP_HOST:POSTLINE_SUBMISSION_PORT until ``stop``. Raises ``OSError``
    when the port cannot be bound (the process stops: a listener nobody can reach is a fault)."""
    s = runtime.settings
    handler = SubmissionHandler(runtime)
    server = await asyncio.get_running_loop().create_server(
        factory(runtime, handler, server_context(s)), host=s.http_host, port=s.submission_port,
        reuse_port=runtime.shared_ports)  # the API processes of `postline all` share it
    log.info("SMTP submission on %s:%s", s.http_host, s.submission_port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
