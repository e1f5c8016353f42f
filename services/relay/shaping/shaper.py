"""The sender's gate per mailbox provider: connection leases for the SMTP pool, a start time
per message from the provider's shared schedule, and the adaptive reaction to its replies.

A throttled recipient is deferred (a ``deferred`` event, so deferrals per provider count
it) with a ``retry_after`` of the pause; its retry then waits for the provider's pause and
halved rate. With POSTLINE_SHAPING_HOLD it may instead wait inside the relay and be tried
again, up to that many seconds. Nothing bounces for being throttled: only a 5xx reply
bounces, as before."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Literal
from datetime import datetime, timezone

from services.relay.outcome import DeliveryResult, PartlySent
from services.relay.shaping import limits as provider_limits
from services.relay.shaping.replies import classify
from services.relay.shaping import warmup
from services.relay.shaping.port import QUEUE_TTL, ShapingStore
from shared import events as ev
from shared import metrics
from shared.consumer_loop import BatchLost
from shared.control.state import ControlState
from shared.settings import Settings

log = logging.getLogger(__name__)
# (workspace_id, service_id) of the message being delivered, set by the relay's handler: whose
# message completed a spike of policy blocks (the alert's owner)
sending_for: ContextVar[tuple[str, str] | None] = ContextVar("sending_for", default=None)
WARMUP_POLL = 1.0  # seconds between two looks for a warm-up cap that grew
SLOT_POLL = 0.05  # seconds between two tries for a connection slot when all are taken
PUBLISH_INTERVAL = 1.0  # seconds between two refreshes of the gauges, besides state changes
STATES = ("normal", "backing_off", "paused")


def shaping_key(provider: str, source: ev.PoolAddress | None) -> str:
    """What limits, leases and the adaptive state are kept per: the provider, and the source
    address when the mail leaves from a pool's (``google@192.0.2.7``). Providers judge each
    sending address on its own (its connections, rate and reputation), so every address of a
    pool has the provider's limits (KumoMTA's egress path: source × site); mail from the
    hosts' own addresses shares one budget per provider for the whole installation."""
    return f"{provider}@{source.ip}" if source is not None else provider


def provider_of_key(key: str) -> str:
    return key.partition("@")[0]


def label_of(key: str) -> str:
    """The metrics' ``provider`` label of a shaping key: the provider (``other`` for every
    ``other:<domain>``), without the source address, so the series stay few."""
    return metrics.provider_label(provider_of_key(key))


def warmup_bucket(provider: str) -> str:
    """What a warm-up cap counts per: a named provider, or every other destination together."""
    return metrics.provider_label(provider)


PAUSE_RECHECK = 1.0  # seconds of waiting for a start time after which a pause begun meanwhile is looked for
Turn = Callable[[], Awaitable[None]]
Sender = Callable[[list[str], Turn], Awaitable[dict[str, DeliveryResult]]]  # (recipients, turn) → outcomes


class Slots:
    """Connection slots of one provider, for ``SmtpPool``: a lease per open session."""

    def __init__(self, shaper: Shaper, provider: str) -> None:
        self.shaper, self.provider = shaper, provider

    @property
    def per_connection(self) -> int:
        return self.shaper.limits(self.provider).per_connection

    async def acquire(self) -> str:
        while (lease := await self.shaper.store.lease(self.provider, self.shaper.limits(self.provider).max_connections)) is None:
            await asyncio.sleep(SLOT_POLL)
        metrics.SHAPING_CONNECTIONS.labels(label_of(self.provider)).inc()
        return lease

    async def renew(self, lease: str) -> bool:
        return await self.shaper.store.renew(lease)

    def over_share(self) -> bool:
        return self.shaper.store.over_share(self.provider, self.shaper.limits(self.provider).max_connections)

    async def release(self, lease: str) -> None:
        metrics.SHAPING_CONNECTIONS.labels(label_of(self.provider)).dec()
        await self.shaper.store.release(lease)


class Shaper:
    def __init__(self, settings: Settings, control: ControlState | None, store: ShapingStore,
                 alert: Callable[[ev.Alert], Awaitable[object]] | None = None) -> None:
        """``alert``: appends an ``alert`` event (to email.events) when a provider is paused
        for policy blocks and when it resumes."""
        self.settings, self.control, self.store, self.alert = settings, control, store, alert
        self._published = 0.0
        self._turns: dict[tuple[str, int], int] = {}  # (pool id, family) → messages its warm addresses took, in turn

    def limits(self, key: str) -> ev.ProviderLimits:
        """The limits of a provider, or of a provider from one source address (``shaping_key``)."""
        shaping = self.control.shaping if self.control is not None else None
        return provider_limits.limits_for(provider_of_key(key), shaping.providers if shaping else {}, self.settings)

    def slots(self, provider: str) -> Slots:
        return Slots(self, provider)

    @contextlib.asynccontextmanager
    async def _queued(self, key: str, n: int) -> AsyncIterator[None]:
        """``n`` recipients wait for ``key`` meanwhile: in the gauge and the shared count
        (``GET /api/email/shaping``'s ``queued``)."""
        depth = metrics.SHAPING_QUEUE_DEPTH.labels(label_of(key))
        depth.inc(n)
        await self.store.queued(key, n)
        try:
            yield
        finally:
            depth.dec(n)
            await self.store.queued(key, -n)

    async def _wait(self, key: str, seconds: float) -> None:
        """Sleep, saying now and then that the queued recipients still wait (QUEUE_TTL)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, QUEUE_TTL / 3))
            if end - time.monotonic() > 0:
                await self.store.queued(key, 0)

    async def _wait_turn(self, provider: str, n: int) -> None:
        """Wait for the provider's next start time (its pause, then its rate): the store
        returns it (embedded) or waits for it itself (Kafka). A pause that began while a
        message waited a second or more for its start time (a 421 to a message before it)
        holds it too: its turn is taken again after the pause, at the rate then."""
        if self.store.waits_in_reserve:
            async with self._queued(provider, n):
                await self.store.reserve(provider, self.limits(provider).rate)
            return
        start = await self.store.reserve(provider, self.limits(provider).rate)
        while (delay := start - time.time()) > 0:
            async with self._queued(provider, n):
                await self._wait(provider, delay)
            # a wait under PAUSE_RECHECK is not re-checked (a read per message at the rate):
            # at most that much of the old schedule goes into a pause that has just begun
            if delay < PAUSE_RECHECK or await self.store.paused_until(provider) <= time.time():
                return
            start = await self.store.reserve(provider, self.limits(provider).rate)

    async def deliver(self, provider: str, rcpts: list[str], send: Sender) -> dict[str, DeliveryResult]:
        """``send(rcpts, turn)`` when the provider allows it; throttled recipients again after
        the pause, until the hold is over. ``turn()`` waits for the provider's next start time
        (its pause, then its rate): the sender awaits it once it holds a connection, right
        before the transaction. A turn taken before a connection was in hand would be spent
        while waiting for one, and when slow connections freed up, the messages whose turns
        had passed would all go at once, past the rate."""
        out: dict[str, DeliveryResult] = {}
        hold_until = time.monotonic() + self.settings.shaping_hold
        pending = rcpts
        while pending:
            try:
                results = await send(pending, functools.partial(self._wait_turn, provider, len(pending)))
            except BatchLost as exc:
                # the final replies of an earlier pass must reach the ledger (else the message
                # goes out to those recipients again); the throttled rest is the new owner's
                answered = {r: res for r, res in out.items() if r not in pending}
                if not any(res.status in ev.FINAL_TYPES for res in answered.values()):
                    raise
                raise PartlySent(answered) from exc
            throttled = [r for r, res in results.items() if classify(res.smtp_code, res.smtp_reply) == "throttle"]
            reacted = True
            try:
                await self._react(provider, results)
            except Exception:  # the server has answered: its replies must reach the ledger, not be sent again
                log.exception("shaping: recording %s's replies failed; the outcomes stand", provider)
                reacted = False  # no pause recorded: the throttled ones are deferred, not tried again now
            out.update(results)
            if not throttled or not reacted or time.monotonic() >= hold_until:
                for r in throttled:  # deferred, soon: the provider's pause
                    out[r] = dataclasses.replace(out[r], retry_after=max(out[r].retry_after or 0, self.settings.shaping_pause))
                break
            pending = throttled
        return out

    async def _react(self, provider: str, results: dict[str, DeliveryResult]) -> None:
        configured = self.limits(provider).rate
        kinds = {classify(res.smtp_code, res.smtp_reply): res for res in results.values()}
        if (res := kinds.get("throttle")) is not None:
            await self.store.throttled(provider, configured, f"{res.smtp_code} {res.smtp_reply}", self.settings.shaping_pause)
        elif (res := kinds.get("block")) is not None:
            owner = sending_for.get() or ("", "")
            reply = f"{res.smtp_code} {res.smtp_reply}"
            since = await self.store.blocked(provider, reply, self.settings.shaping_block_spike,
                                             self.settings.shaping_block_pause, "|".join(owner))
            if since is not None:
                await self._alert("raised", provider, owner, since, f"{provider} paused after a spike of policy blocks: {reply}")
        elif any(res.status == "delivered" for res in results.values()):
            for scope, since in await self.store.clean(provider, configured, self.settings.shaping_recovery):
                workspace_id, _, service_id = scope.partition("|")
                await self._alert("cleared", provider, (workspace_id, service_id), since, f"{provider} resumed")
        if kinds.keys() & {"throttle", "block"} or time.monotonic() - self._published >= PUBLISH_INTERVAL:
            if self.store.blocking:
                await asyncio.to_thread(self.publish)
            else:  # in memory: read on the loop that changes it
                self.publish()

    async def source(self, provider: str, family: int = 0) -> ev.PoolAddress | None | Literal["wait", "unreachable"]:
        """The address the message being delivered leaves from, for a destination of address
        ``family`` (4 or 6; 0: any): its service's IP pool's first address of that family
        under its warm-up cap for ``provider`` (new addresses first, so they warm up; then
        warm ones), None when the service has no pool (the host's address), "wait" when every
        such address has reached today's cap, "unreachable" when the pool has none of that
        family (an IPv4-only pool cannot reach an IPv6 MX address). Warm addresses take the
        messages in turn."""
        owner = sending_for.get()
        svc = self.control.services.get(owner[1]) if owner and self.control is not None else None
        pool = self.control.ip_pools.get(svc.ip_pool_id) if svc and svc.ip_pool_id and self.control else None
        if pool is None or not pool.addresses:
            return None
        usable = [a for a in pool.addresses if not family or ipaddress.ip_address(a.ip).version == family]
        if not usable:
            return "unreachable"
        today = datetime.now(timezone.utc).date()
        capped = [(a, c) for a in usable if (c := warmup.cap(pool, a, today)) is not None]
        for address, limit in capped:
            if await self.store.take_warmup(address.ip, warmup_bucket(provider), today.isoformat(), limit):
                return address
        warm = [a for a in usable if warmup.cap(pool, a, today) is None]
        if not warm:
            return "wait"
        turns = (pool.pool_id, family)
        turn = self._turns[turns] = self._turns.get(turns, -1) + 1
        return warm[turn % len(warm)]  # in turn: each address has its own limits (shaping_key)

    async def wait_for_source(self, provider: str, family: int = 0
                              ) -> ev.PoolAddress | None | Literal["wait", "unreachable"]:
        """``source``, waiting (in the provider's queue) up to the hold for a warm-up cap to
        grow (a new day, a changed schedule); "wait" after that: defer the message."""
        hold_until = time.monotonic() + self.settings.shaping_hold
        chosen = await self.source(provider, family)
        if chosen != "wait" or time.monotonic() >= hold_until:
            return chosen
        async with self._queued(provider, 1):
            while (chosen := await self.source(provider, family)) == "wait" and time.monotonic() < hold_until:
                await asyncio.sleep(WARMUP_POLL)
                await self.store.queued(provider, 0)
        return chosen

    async def _alert(self, state: str, provider: str, owner: tuple[str, str], since: float, message: str) -> None:
        if self.alert is None:
            return
        workspace_id, service_id = owner
        key = ev.alert_key(service_id, "provider_paused", provider, datetime.fromtimestamp(since, timezone.utc))
        # its id derives from the episode and the state: relays that clear the same one emit one event
        await self.alert(ev.Alert(id=ev.derived_id(key, state), workspace_id=workspace_id, service_id=service_id or None, email_id=key,
                                  kind="provider_paused", state="raised" if state == "raised" else "cleared",
                                  provider=provider_of_key(provider), value=float(self.settings.shaping_block_spike),
                                  threshold=float(self.settings.shaping_block_spike), message=message[:500]))

    def publish(self) -> None:
        """The gauges of every provider with state: per label (``label_of``), the lowest
        current rate and the worst state among its keys (a paused source address shows).
        Never raises: a metrics refresh must not fail a delivery."""
        self._published = time.monotonic()
        try:
            now = time.time()
            rates: dict[str, float] = {}
            states: dict[str, int] = {}
            for view in self.store.views():
                label, configured = label_of(view.provider), self.limits(view.provider).rate
                rate = view.rate if view.rate is not None else configured
                rates[label] = min(rates.get(label, rate), rate)
                state = 2 if view.paused_until > now else 1 if view.backing_off else 0
                states[label] = max(states.get(label, 0), state)
            for label, rate in rates.items():
                metrics.SHAPING_RATE.labels(label).set(rate)
                for i, s in enumerate(STATES):
                    metrics.SHAPING_STATE.labels(label, s).set(1 if i == states[label] else 0)
            for ip, counts in self.store.sent_today(datetime.now(timezone.utc).date().isoformat()).items():
                metrics.IP_WARMUP_SENT_TODAY.labels(ip).set(sum(counts.values()))
        except Exception:
            log.warning("shaping gauges not refreshed", exc_info=True)
