"""Installation-wide shaping over Kafka: every relay replica publishes what it holds on the
compacted topic ``postline.shaping`` and takes its share of each provider's limits among the
relays that want that provider now — no setting knows how many relays run.

Records (key → JSON value):

- ``relay|<id>``: a relay's heartbeat, every ``HEARTBEAT`` seconds and at once when its
  connections change: the providers it wants (it has mail for them: waiting for a turn or a
  slot, holding a connection, or sent within ``WANT_TTL``), its open connections per
  provider, its recipients waiting per provider, its policy blocks of the last minute, its
  warm-up counts of the day. A relay's
  id is new at each start; its warm-up counts count after it is gone.
- ``provider|<key>``: a provider's adaptive state, written by whichever relay changed it and
  merged field by field by every reader (``merge``: the same result in any order), so a
  relay that had not yet read another's throttle cannot undo it.

Who is alive is judged on this relay's own clock of receipt, against its own heartbeat read
back, never on the sender's clock (hosts' clocks differ): a heartbeat that arrives while this
relay follows the topic is a live relay's; only those read back at the start (the compacted
topic keeps the last heartbeat of relays long gone) are judged by their time against this
relay's clock. A relay that stops publishing counts ``ALIVE`` seconds after the others last heard it,
while the others keep hearing themselves. A relay that does not hear its own heartbeat back
within ``ALIVE`` (cut off from Kafka, or its loop stalled) is not heard by the others either:
it opens no connection and starts no message until it is, and closes its sessions as their
message ends — so the others may take its share.

Shares, for the relays wanting a provider (ids sorted; the order rotates every ``ROTATE``
seconds so that none waits forever when there are more relays than connections):
``max_connections`` split ``C // n`` (the first ``C % n`` one more; a slot gained at a rotation
is used only ``SETTLE`` seconds later, once the relay that lost it has closed it) and the rate
``rate / n``. A relay also never opens a connection while its own and the others' published
connections reach ``max_connections``, and closes its sessions above its share as their
message ends.

A newcomer waits: a relay that starts wanting a provider while others are alive (or that has
just started) waits ``SETTLE`` seconds — several heartbeats and fetches — before its first
connection and message, so the others have shrunk their share by then. The split is equal,
not by demand: a relay with a trickle of mail for a provider holds its share up to
``WANT_TTL`` after its last message. Warm-up caps may be passed by what the other relays
counted in the last heartbeat (docs/delivery.md)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from services.relay.shaping.port import MIN_RATE_SHARE, ProviderView, ShapingStore
from shared import events as ev
from shared.log.follow import follow, read_up_to_now
from shared.log.port import Consumer, EventLog, Record

log = logging.getLogger(__name__)
HEARTBEAT = 0.2  # seconds between two heartbeats of a relay
ALIVE = 3.0  # seconds a relay counts after it was last heard
SETTLE = 1.0  # seconds a relay waits before using a provider it starts to want (the others see it)
WANT_TTL = 10.0  # seconds after its last message a relay still wants a provider
ROTATE = 10.0  # seconds between two rotations of the connection shares' order
RECHECK = 0.2  # longest sleep of a message waiting for its turn (the rate may change meanwhile)
BLOCK_WINDOW = 60.0  # seconds policy blocks count toward a spike
FORGET_AFTER = 26 * 3600.0  # seconds after its last heartbeat a relay is forgotten (its warm-up day is over)
NEVER = float("-inf")


def _newer(a: dict[str, Any], b: dict[str, Any], *fields: str) -> dict[str, Any]:
    def at(row: dict[str, Any]) -> tuple[float, ...]:
        return tuple(row.get(f) or 0.0 for f in fields)
    return b if at(b) > at(a) else a


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two versions of a provider's state as one (commutative, idempotent): the rate of the
    one that knows the newer throttle (then the newer recovery step), the later pause, the
    newer reply, the newer alert, the later end of a pause for blocks."""
    rate, reply, alert = _newer(a, b, "last_throttle", "last_step"), _newer(a, b, "last_reply_at"), _newer(a, b, "alert_since")
    return {"rate": rate.get("rate"), "last_throttle": rate.get("last_throttle") or 0.0,
            "last_step": rate.get("last_step") or 0.0,
            "paused_until": max(a.get("paused_until") or 0.0, b.get("paused_until") or 0.0),
            "last_reply": reply.get("last_reply"), "last_reply_at": reply.get("last_reply_at"),
            "alert_since": alert.get("alert_since"), "alert_scope": alert.get("alert_scope"),
            "alert_by": alert.get("alert_by"),
            "blocks_reset": max(a.get("blocks_reset") or 0.0, b.get("blocks_reset") or 0.0)}


def paused_for_blocks(row: dict[str, Any]) -> bool:
    return row.get("alert_since") is not None and row["alert_since"] > (row.get("blocks_reset") or 0.0)


@dataclass
class _Mine:
    """This relay's part of one provider (monotonic times)."""
    leases: set[str] = field(default_factory=set)
    wanted_at: float = NEVER  # the last message or connection asked for
    wanted_since: float = NEVER  # when the current want began
    waiting: int = 0  # messages waiting for their turn
    last_start: float = NEVER  # this relay's last message start
    blocks: list[float] = field(default_factory=list)  # wall times of its policy blocks
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Peer:
    """Another relay, as its latest heartbeat says."""
    seen: float  # monotonic time it was read here (NEVER: already stale when read)
    at: float  # its wall time when it published
    want: set[str]
    held: dict[str, int]
    blocks: dict[str, list[float]]
    warm: dict[str, int]
    queued: dict[str, int]


class GossipShapingStore(ShapingStore):
    """``observer``: reads the relays' state and publishes nothing (the API's view)."""
    blocking = False
    waits_in_reserve = True

    def __init__(self, log_: EventLog, observer: bool = False) -> None:
        self.log, self.observer = log_, observer
        self.me = uuid.uuid4().hex[:12]
        self.peers: dict[str, _Peer] = {}
        self.rows: dict[str, dict[str, Any]] = {}  # shaping key → adaptive state
        self.mine: dict[str, _Mine] = {}
        self.warm: dict[str, int] = {}  # "ip|provider|day" → this relay's count
        self._queued: dict[str, int] = {}  # key → this relay's recipients waiting for it
        self._lease_of: dict[str, str] = {}  # lease → shaping key
        self._raised: dict[str, list[tuple[str, float]]] = {}  # key → alerts this relay raised, to clear
        self._orphans_cleared: set[float] = set()  # alerts of relays no longer heard, cleared here (their start)
        self._unsent: set[str] = set()  # keys whose row changed here since the last publish
        self._heard = self._first_heard = NEVER  # when this relay's own heartbeat was (first) read back
        self._kick = asyncio.Event()
        self._consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Read what every relay published up to now (bounded), then follow and publish."""
        self._consumer = consumer = self.log.consumer([ev.Topic.SHAPING], group=None)
        await consumer.start()
        await read_up_to_now(consumer, functools.partial(self._apply, live=False))
        self._tasks = [asyncio.create_task(follow(consumer, self._apply, "shaping topic"), name="shaping-follow")]
        if not self.observer:
            self._tasks.append(asyncio.create_task(self._publish_loop(), name="shaping-publish"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self.observer and self._consumer is not None:
            self.mine.clear()  # leaving: it wants and holds nothing (its warm-up counts stay)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), ALIVE)
        if self._consumer is not None:
            await self._consumer.close()

    # ------------------------------------------------------------ who is heard, who wants what
    def _heard_now(self, now: float) -> bool:
        """This relay's own heartbeat came back within ALIVE: the others hear it too."""
        return now - self._heard <= ALIVE

    def _alive_ids(self) -> list[str]:
        reference = time.monotonic() if self.observer else self._heard
        return [pid for pid, p in self.peers.items() if reference - p.seen <= ALIVE]

    def _alive(self) -> list[_Peer]:
        return [self.peers[pid] for pid in self._alive_ids()]

    def _m(self, key: str) -> _Mine:
        if key not in self.mine:
            self.mine[key] = _Mine()
        return self.mine[key]

    def _wants(self, m: _Mine, now: float) -> bool:
        return bool(m.leases or m.waiting) or now - m.wanted_at <= WANT_TTL

    def _want(self, key: str) -> _Mine:
        m, now = self._m(key), time.monotonic()
        if not self._wants(m, now):
            m.wanted_since = now
            self._kick.set()
        m.wanted_at = now
        return m

    def _active(self, key: str) -> list[str]:
        """Ids of the relays that want ``key``, sorted (this one among them when it does)."""
        ids = [pid for pid in self._alive_ids() if key in self.peers[pid].want or self.peers[pid].held.get(key)]
        m = self.mine.get(key)
        if not self.observer and m is not None and self._wants(m, time.monotonic()):
            ids.append(self.me)
        return sorted(ids)

    def _may_send(self, m: _Mine, now: float) -> bool:
        """Heard, and past the newcomer's wait: SETTLE after this relay was first heard and
        after a new want began (unless no other relay is alive)."""
        if not self._heard_now(now) or now < self._first_heard + SETTLE:
            return False
        return now >= m.wanted_since + SETTLE or not self._alive()

    def _share_at(self, ids: list[str], max_connections: int, wall: float) -> int:
        n = len(ids)
        rank = (ids.index(self.me) - int(wall // ROTATE)) % n
        return max_connections // n + (1 if rank < max_connections % n else 0)

    def _connection_share(self, key: str, max_connections: int, settled: bool = False) -> int:
        """This relay's connections of ``key``; ``settled``: a slot gained at a rotation only
        once SETTLE has passed (the relay that lost it saw the rotation and closed it)."""
        ids = self._active(key)
        if self.me not in ids:
            return 0
        wall = time.time()
        share = self._share_at(ids, max_connections, wall)
        return min(share, self._share_at(ids, max_connections, wall - SETTLE)) if settled else share

    def _held_by_others(self, key: str) -> int:
        return sum(p.held.get(key, 0) for p in self._alive())

    # ------------------------------------------------------------ connections
    async def lease(self, provider: str, max_connections: int) -> str | None:
        m, now = self._want(provider), time.monotonic()
        if not self._may_send(m, now):
            return None
        if len(m.leases) >= self._connection_share(provider, max_connections, settled=True):
            return None
        if len(m.leases) + self._held_by_others(provider) >= max_connections:
            return None
        lease = uuid.uuid4().hex
        m.leases.add(lease)
        self._lease_of[lease] = provider
        self._kick.set()
        return lease

    async def renew(self, lease: str) -> bool:
        """Nothing to do: the heartbeat says this relay is alive, with its connections."""
        return lease in self._lease_of

    async def release(self, lease: str) -> None:
        provider = self._lease_of.pop(lease, None)
        if provider is not None:
            self._m(provider).leases.discard(lease)
            self._kick.set()

    def over_share(self, provider: str, max_connections: int) -> bool:
        m = self.mine.get(provider)
        if m is None or not m.leases:
            return False
        return not self._heard_now(time.monotonic()) or len(m.leases) > self._connection_share(provider, max_connections)

    async def queued(self, provider: str, n: int) -> None:
        """Counted here and published with the heartbeat (a dead relay's count goes with it)."""
        if n:
            left = self._queued.get(provider, 0) + n
            if left > 0:
                self._queued[provider] = left
            else:
                self._queued.pop(provider, None)

    # ------------------------------------------------------------ rate
    def row(self, key: str) -> dict[str, Any]:
        return merge(self.rows.get(key, {}), {})

    async def reserve(self, provider: str, configured: float) -> float:
        """Waits here (the rate, the pause or the relays wanting it may change meanwhile) and
        returns the start: this relay's messages leave ``1 / (rate / relays wanting it)`` apart."""
        m = self._want(provider)
        m.waiting += 1
        try:
            async with m.turn:
                while True:
                    now, wall = time.monotonic(), time.time()
                    row = self.row(provider)
                    rate = min(row["rate"] or configured, configured) / max(1, len(self._active(provider)))
                    if self._may_send(m, now) and now >= m.last_start + 1.0 / rate and wall >= row["paused_until"]:
                        m.last_start = m.wanted_at = now
                        return wall
                    wait = max(m.last_start + 1.0 / rate - now, row["paused_until"] - wall, 0.01)
                    await asyncio.sleep(min(wait, RECHECK))
        finally:
            m.waiting -= 1

    # ------------------------------------------------------------ adaptive
    def _write(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = merge(self.rows.get(key, {}), row)
        self._unsent.add(key)
        self._kick.set()

    async def throttled(self, provider: str, configured: float, reply: str, pause: float) -> float:
        row, now = self.row(provider), time.time()
        current = min(row["rate"] or configured, configured)
        # replies to messages sent before this pause began come back together: one halving per pause
        rate = current if row["paused_until"] > now else max(current / 2, configured * MIN_RATE_SHARE)
        row.update(rate=rate, last_throttle=now, paused_until=max(row["paused_until"], now + pause),
                   last_reply=reply[:300], last_reply_at=now)
        self._write(provider, row)
        return float(rate)

    async def blocked(self, provider: str, reply: str, spike: int, pause: float, scope: str) -> float | None:
        m, row, now = self._m(provider), self.row(provider), time.time()
        m.blocks = [t for t in m.blocks if now - t < BLOCK_WINDOW] + [now]
        seen = m.blocks + [t for p in self.peers.values() for t in p.blocks.get(provider, [])]
        blocks = sum(1 for t in seen if now - t < BLOCK_WINDOW and t > row["blocks_reset"])
        raise_it = blocks >= spike and not paused_for_blocks(row)
        row.update(last_reply=reply[:300], last_reply_at=now)
        if raise_it:
            row.update(paused_until=max(row["paused_until"], now + pause), alert_since=now, alert_scope=scope,
                       alert_by=self.me)
            self._raised.setdefault(provider, []).append((scope, now))
        self._write(provider, row)
        return now if raise_it else None

    async def clean(self, provider: str, configured: float, recovery: float) -> list[tuple[str, float]]:
        """As the port says; each relay clears the alerts it raised (two relays may have
        completed a spike at once, each raising its own), and an alert whose relay is no
        longer heard (restarted or gone during the pause: its memory of it is lost) is
        cleared by the relays that see the pause over (a clearing twice is the same state)."""
        if provider not in self.rows and provider not in self._raised:
            return []
        row, now, changed = self.row(provider), time.time(), False
        rate = row["rate"]
        if rate is not None and rate < configured and now - max(row["last_throttle"], row["last_step"]) >= recovery:
            grown = rate + configured / 4
            row.update(rate=None if grown >= configured else grown, last_step=now)
            changed = True
        if paused_for_blocks(row) and row["paused_until"] <= now:
            row.update(blocks_reset=now)
            changed = True
        if changed:
            self._write(provider, row)
        row = self.row(provider)
        if paused_for_blocks(row):
            return []
        mine = self._raised.pop(provider, [])
        since, by = row.get("alert_since"), row.get("alert_by")
        if since is not None and by not in (self.me, None, *self._alive_ids()) and since not in self._orphans_cleared:
            self._orphans_cleared.add(since)
            mine.append((row["alert_scope"], since))
        return mine

    # ------------------------------------------------------------ warm-up
    def _warm_total(self, key: str) -> int:
        return self.warm.get(key, 0) + sum(p.warm.get(key, 0) for p in self.peers.values())

    async def take_warmup(self, ip: str, provider: str, day: str, cap: int) -> bool:
        key = f"{ip}|{provider}|{day}"
        if self._warm_total(key) >= cap:
            return False
        self.warm = {k: n for k, n in self.warm.items() if k.endswith(f"|{day}")}  # yesterday's are done with
        self.warm[key] = self.warm.get(key, 0) + 1
        self._kick.set()
        return True

    def sent_today(self, day: str) -> dict[str, dict[str, int]]:
        keys = set(self.warm).union(*(p.warm for p in self.peers.values()))
        out: dict[str, dict[str, int]] = {}
        for key in keys:
            ip, provider, on = key.split("|", 2)
            if on == day:
                out.setdefault(ip, {})[provider] = self._warm_total(key)
        return out

    def views(self) -> list[ProviderView]:
        now = time.time()
        held = {key: len(m.leases) for key, m in self.mine.items() if m.leases}
        queued = dict(self._queued)
        for peer in self._alive():
            for key, n in peer.held.items():
                held[key] = held.get(key, 0) + n
            for key, n in peer.queued.items():
                queued[key] = queued.get(key, 0) + n
        out = []
        for key in sorted(set(self.rows) | {k for k, c in held.items() if c} | {k for k, n in queued.items() if n}):
            row = self.row(key)
            out.append(ProviderView(key, row["rate"], row["paused_until"] if row["paused_until"] > now else 0.0,
                                    row["rate"] is not None, row["last_reply"], row["last_reply_at"],
                                    held.get(key, 0), paused_for_blocks(row), queued.get(key, 0)))
        return out

    # ------------------------------------------------------------ sharing
    def _heartbeat(self) -> tuple[str, bytes]:
        now, wall = time.monotonic(), time.time()
        for m in self.mine.values():
            m.blocks = [t for t in m.blocks if wall - t < BLOCK_WINDOW]
        value = {"k": "relay", "p": self.me, "at": wall,
                 "want": sorted(key for key, m in self.mine.items() if self._wants(m, now)),
                 "held": {key: len(m.leases) for key, m in self.mine.items() if m.leases},
                 "blocks": {key: m.blocks for key, m in self.mine.items() if m.blocks},
                 "warm": self.warm, "queued": self._queued}
        return f"relay|{self.me}", json.dumps(value).encode()

    def _forget(self) -> None:
        """Drop what no longer matters: idle keys of this relay, relays gone for a day."""
        now, wall = time.monotonic(), time.time()
        for key in [k for k, m in self.mine.items()
                    if not self._wants(m, now) and not m.blocks and not m.turn.locked()]:
            del self.mine[key]
        for pid in [pid for pid, p in self.peers.items() if wall - p.at > FORGET_AFTER]:
            del self.peers[pid]

    async def _flush(self) -> None:
        keys, self._unsent = self._unsent, set()
        records = [(f"provider|{key}", json.dumps({"k": "provider", "key": key, "row": self.rows[key]}).encode())
                   for key in keys]
        records.append(self._heartbeat())
        try:
            await self.log.append_many(ev.Topic.SHAPING, records)
        except BaseException:
            self._unsent |= keys
            raise

    async def _publish_loop(self) -> None:
        """Publishes until cancelled (``close``). ``asyncio.timeout``, not ``wait_for``: on
        Python 3.11 a ``wait_for`` whose awaitable finishes as the task is cancelled (a write
        kicked the loop just before ``close``) returns and drops the cancellation, and the
        loop would run on with ``close`` waiting for it for ever."""
        last_forget = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT):
                    await self._kick.wait()
            self._kick.clear()
            if time.monotonic() - last_forget > 60:
                self._forget()
                last_forget = time.monotonic()
            try:
                async with asyncio.timeout(ALIVE):
                    await self._flush()
            except Exception:  # the log is down: this relay is not heard, and stops (see the module docstring)
                log.debug("shaping state not published", exc_info=True)
                await asyncio.sleep(HEARTBEAT)

    def _apply(self, records: list[Record], live: bool = True) -> None:
        """``live``: records read while following (just published), not at the start."""
        now, wall = time.monotonic(), time.time()
        for rec in records:
            try:
                value = json.loads(rec.value)
                if value["k"] == "relay" and value["p"] == self.me:
                    self._heard = now
                    if self._first_heard == NEVER:
                        self._first_heard = now
                elif value["k"] == "relay":
                    at = float(value["at"])
                    self.peers[value["p"]] = _Peer(now if live or wall - at <= ALIVE else NEVER, at, set(value["want"]),
                                                   dict(value["held"]), dict(value["blocks"]), dict(value["warm"]),
                                                   dict(value.get("queued", {})))
                elif value["k"] == "provider":
                    key = value["key"]
                    self.rows[key] = merge(self.rows.get(key, {}), dict(value["row"]))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable shaping record at %s/%s", rec.partition, rec.offset)
