"""One send per Idempotency-Key, whichever process or replica a request reaches.

A request looks the key up; a free key (or an unfinished one whose lease ran out, same body)
it claims through ``Claims`` — the installation's one order decides who holds it. The holder
sends and records its response (done) or, on an error answer, releases the key — except when
the log did not confirm the append in time (it may still land) or the request was cancelled:
then the claim stays until its lease runs out, so no other body takes the key. Any other
request with the same body waits for the holder's response (at most until the lease runs
out, then it may take over) and answers with it; with another body it gets 409 at once.

Every "no" is a ``Refusal`` value (services/api/refusal.py); the HTTP edge renders it."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from services.api.idempotency import claims as c
from services.api.idempotency.claims import Claim, Claims
from services.api.idempotency.keys import check_key
from services.api.refusal import Refusal
from shared.log.port import LogTimeout

log = logging.getLogger(__name__)
Response = dict[str, Any]  # the first response, as recorded with the key (JSON)


@dataclass(frozen=True)
class NothingSent:
    """A produced answer that sent nothing (a batch whose every item was refused): it is
    answered, and the key is released instead of recorded, as for a refusal."""

    response: Response


Produce = Callable[[Claim], Awaitable["Response | Refusal | NothingSent"]]  # given the claim this request holds
OTHER_BODY = Refusal(409, "Idempotency-Key: already used with a different request body",
                     code="invalid_idempotent_request")
IN_PROGRESS = Refusal(409, "Idempotency-Key: a request with this key is still in progress; retry later",
                      code="concurrent_idempotent_requests")


class _NotRecorded(Exception):
    """The claim could not be recorded (the refusal says so; the log's error is its cause)."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal


class Idempotency:
    def __init__(self, claims: Claims, lease: float):
        """``lease``: seconds a holder is trusted to finish (POSTLINE_IDEMPOTENCY_LEASE)."""
        self.claims, self.lease = claims, lease

    async def run(self, scope: str, key: str, body_hash: str, produce: Produce) -> Response | Refusal:
        """The first response for (scope, key), or ``produce()``'s when this request holds the
        key. Refusals: 400 for a bad key, 409 for another body (or still in progress after two
        leases), 503 when the claim cannot be recorded (nothing sent), or ``produce``'s own
        (the key is then released, as when ``produce`` raises — which propagates).
        ``produce`` is given the claim it sends under (its ``since`` names the email)."""
        if refused := check_key(key):
            return refused
        me, give_up = uuid.uuid4().hex, time.time() + 2 * self.lease
        while True:
            try:
                held = await self._look_or_claim(scope, key, body_hash, me)
            except _NotRecorded as exc:
                return exc.refusal
            if held is None or held.released:  # released between our look and our claim: try again
                if time.time() >= give_up:
                    return IN_PROGRESS
                continue
            if held.owner == me and held.response is None:
                return await self._produce(scope, key, held, produce)
            if held.body_hash != body_hash:
                return OTHER_BODY
            if held.response is not None:
                return held.response
            now = time.time()
            if now >= give_up:
                return IN_PROGRESS
            await self.claims.changed(scope, key, min(held.lease_until, give_up) - now)

    async def _look_or_claim(self, scope: str, key: str, body_hash: str, me: str) -> Claim | None:
        """The key's state, claimed by ``me`` when it was free; raises ``_NotRecorded``."""
        now = time.time()
        held = await self.claims.look(scope, key)
        if held is None or held.released or (held.response is None and held.lease_until <= now
                                             and held.body_hash == body_hash):
            try:
                held = await self.claims.change(scope, key, c.claim(me, body_hash, now, self.lease,
                                                                    held.since if held is not None else None))
            except Exception as exc:  # the log did not record the claim: nothing was sent
                raise _NotRecorded(Refusal(503, "the event log did not record the Idempotency-Key; nothing was sent, "
                                                "retry with the same key", retry_after=1, cause=exc)) from exc
        return held

    async def _produce(self, scope: str, key: str, held: Claim, produce: Produce) -> Response | Refusal:
        me, body_hash = held.owner, held.body_hash
        try:
            response = await produce(held)
        except asyncio.CancelledError:  # the append may land all the same (the log's writer goes on):
            raise                       # the claim stays until its lease runs out, as for a crash
        except BaseException:
            await self._record(scope, key, c.release(me, body_hash, time.time(), held.since))
            raise
        if isinstance(response, Refusal) and isinstance(response.cause, LogTimeout):
            return response  # not confirmed in time, may still land: no other body takes the key before the lease ends
        if isinstance(response, (Refusal, NothingSent)):  # nothing was sent: a retry may try again, with any body
            await self._record(scope, key, c.release(me, body_hash, time.time(), held.since))
            return response.response if isinstance(response, NothingSent) else response
        await self._record(scope, key, c.done(me, body_hash, time.time(), response, held.since))
        return response

    async def _record(self, scope: str, key: str, change: dict[str, Any]) -> None:
        """Done or release: when it cannot be recorded the lease still runs out, and a retry
        after it sends again under the same email id (the relay absorbs the copy)."""
        try:
            await self.claims.change(scope, key, change)
        except Exception:
            log.warning("Idempotency-Key of service %s: could not record %s", scope, change["kind"], exc_info=True)

    async def close(self) -> None:
        await self.claims.close()
