"""Installation-wide shaping over Kafka: every relay replica publishes what it holds on the
compacted topic ``postline.shaping`` and takes its share of each provider's limits among the
relays that want that provider now — no setting knows how many relays run.

Records (key → JSON value):

- ``relay|<id>``: a relay's heartbeat, every ``HEARTBEAT`` seconds and at once when its
  connections change: the providers it wants (it has mail for them: waiting for a turn or a
  slot, holding a connection, or sent within ``WANT_TTL``), its open connections per
  provider, its policy blocks of the last minute, its warm-up counts of today. A relay's id
  is new at each start; a relay whose heartbeat is older than ``ALIVE`` seconds holds nothing
  (its process is gone with its connections), but its warm-up counts still count.
- ``provider|<name>``: a provider's adaptive state (current rate, paused until, last reply,
  paused for blocks), written by whichever relay changed it; the newest ``v`` (time, relay
  id) wins, so two relays halving the same rate at once halve it once.

Shares, for the relays wanting a provider (ids sorted; the order rotates every ``ROTATE``
seconds so that none waits forever when there are more relays than connections):
``max_connections`` split ``C // n`` (the first ``C % n`` one more) and the rate ``rate / n``.
A relay also never opens a connection while its own and the others' published connections
reach ``max_connections``, and closes its connections above its share as their message ends.

Accuracy: every relay must see a newcomer before it sends. A relay that starts wanting a
provider while other relays are alive waits ``SETTLE`` seconds (more than a heartbeat plus a
fetch) before its first connection and message, so the others have shrunk their share by
then. The limits hold as long as the log carries a heartbeat within ``SETTLE``; a relay cut
off from Kafka keeps its last shares. The split is equal, not by demand: a relay with a
trickle of mail for a provider holds its share up to ``WANT_TTL`` after its last message
(docs/delivery.md)."""
from __future__ import annotations

import asyncio
import contextlib
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
ALIVE = 3.0  # seconds after its last heartbeat a relay still counts
SETTLE = 0.6  # seconds a relay waits before using a provider it starts to want (others see it)
WANT_TTL = 10.0  # seconds after its last message a relay still wants a provider
ROTATE = 10.0  # seconds between two rotations of the connection shares' order
RECHECK = 0.2  # longest sleep of a message waiting for its turn (the rate may change meanwhile)
BLOCK_WINDOW = 60.0  # seconds policy blocks count toward a spike
ROW_DEFAULTS: dict[str, Any] = {"rate": None, "paused_until": 0.0, "last_throttle": 0.0, "last_step": 0.0,
                                "last_reply": None, "last_reply_at": None, "paused_for_blocks": False,
                                "blocks_reset": 0.0, "alert_scope": None, "alert_since": None, "v": [0.0, ""]}


@dataclass
class _Mine:
    """This relay's part of one provider."""
    leases: set[str] = field(default_factory=set)
    wanted_at: float = float("-inf")  # wall time of the last message or connection asked for
    wanted_since: float = 0.0  # wall time the current want began
    waiting: int = 0  # messages waiting for their turn
    last_start: float = 0.0  # wall time of this relay's last message start
    blocks: list[float] = field(default_factory=list)  # wall times of its policy blocks
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Peer:
    """Another relay, as its latest heartbeat says."""
    at: float
    want: set[str]
    held: dict[str, int]
    blocks: dict[str, list[float]]
    warm: dict[str, int]


class GossipShapingStore(ShapingStore):
    """``observer``: reads the others' state and publishes nothing (the API's view)."""

    def __init__(self, log_: EventLog, observer: bool = False) -> None:
        self.log, self.observer = log_, observer
        self.me = uuid.uuid4().hex[:12]
        self.peers: dict[str, _Peer] = {}
        self.rows: dict[str, dict[str, Any]] = {}  # provider → adaptive state
        self.mine: dict[str, _Mine] = {}
        self.warm: dict[str, int] = {}  # "ip|provider|day" → this relay's count
        self._lease_of: dict[str, str] = {}  # lease → provider
        self._unsent: dict[str, dict[str, Any]] = {}  # provider rows not published yet
        self._kick = asyncio.Event()
        self._consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Read what every relay published up to now (bounded), then follow and publish."""
        self._consumer = consumer = self.log.consumer([ev.Topic.SHAPING], group=None)
        await consumer.start()
        await read_up_to_now(consumer, self._apply)
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
                await self._flush()
        if self._consumer is not None:
            await self._consumer.close()

    # ------------------------------------------------------------ who wants what
    def _m(self, provider: str) -> _Mine:
        if provider not in self.mine:
            self.mine[provider] = _Mine()
        return self.mine[provider]

    def _wants(self, m: _Mine, now: float) -> bool:
        return bool(m.leases or m.waiting) or now - m.wanted_at <= WANT_TTL

    def _want(self, provider: str) -> _Mine:
        m, now = self._m(provider), time.time()
        if not self._wants(m, now):
            m.wanted_since = now
            self._kick.set()
        m.wanted_at = now
        return m

    def _alive(self, now: float) -> list[_Peer]:
        return [p for p in self.peers.values() if now - p.at <= ALIVE]

    def _active(self, provider: str, now: float) -> list[str]:
        """Ids of the relays that want ``provider``, sorted (this one among them when it does)."""
        ids = [pid for pid, p in self.peers.items()
               if now - p.at <= ALIVE and (provider in p.want or p.held.get(provider))]
        m = self.mine.get(provider)
        if not self.observer and m is not None and self._wants(m, now):
            ids.append(self.me)
        return sorted(ids)

    def _settled(self, m: _Mine, now: float) -> bool:
        """Past the newcomer's wait (none when no other relay is alive)."""
        return now >= m.wanted_since + SETTLE or not self._alive(now)

    def _connection_share(self, provider: str, max_connections: int, now: float) -> int:
        ids = self._active(provider, now)
        if self.me not in ids:
            return 0
        n = len(ids)
        rank = (ids.index(self.me) - int(now // ROTATE)) % n
        return max_connections // n + (1 if rank < max_connections % n else 0)

    def _held_by_others(self, provider: str, now: float) -> int:
        return sum(p.held.get(provider, 0) for p in self._alive(now))

    # ------------------------------------------------------------ connections
    async def lease(self, provider: str, max_connections: int) -> str | None:
        m, now = self._want(provider), time.time()
        if not self._settled(m, now):
            return None
        if len(m.leases) >= self._connection_share(provider, max_connections, now):
            return None
        if len(m.leases) + self._held_by_others(provider, now) >= max_connections:
            return None
        lease = uuid.uuid4().hex
        m.leases.add(lease)
        self._lease_of[lease] = provider
        self._kick.set()
        return lease

    async def renew(self, lease: str) -> None:
        """Nothing to do: the heartbeat says this relay is alive, with its connections."""

    async def release(self, lease: str) -> None:
        provider = self._lease_of.pop(lease, None)
        if provider is not None:
            self._m(provider).leases.discard(lease)
            self._kick.set()

    def over_share(self, provider: str, max_connections: int) -> bool:
        m = self.mine.get(provider)
        return m is not None and len(m.leases) > self._connection_share(provider, max_connections, time.time())

    # ------------------------------------------------------------ rate
    def row(self, provider: str) -> dict[str, Any]:
        return {**ROW_DEFAULTS, **self.rows.get(provider, {})}

    async def reserve(self, provider: str, configured: float) -> float:
        """Waits here (the rate or the pause may change meanwhile) and returns now: this
        relay's messages leave ``1 / (rate / relays wanting it)`` apart."""
        m = self._want(provider)
        m.waiting += 1
        try:
            async with m.turn:
                while True:
                    now = time.time()
                    row = self.row(provider)
                    rate = min(row["rate"] or configured, configured) / max(1, len(self._active(provider, now)))
                    start = max(m.last_start + 1.0 / rate, row["paused_until"],
                                now if self._settled(m, now) else m.wanted_since + SETTLE)
                    if start <= now:
                        m.last_start = m.wanted_at = now
                        return now
                    await asyncio.sleep(min(start - now, RECHECK))
        finally:
            m.waiting -= 1

    # ------------------------------------------------------------ adaptive
    def _write(self, provider: str, row: dict[str, Any], now: float) -> None:
        row["v"] = [now, self.me]
        self.rows[provider] = row
        self._unsent[provider] = row
        self._kick.set()

    async def throttled(self, provider: str, configured: float, reply: str, pause: float) -> float:
        row, now = self.row(provider), time.time()
        current = min(row["rate"] or configured, configured)
        # replies to messages sent before this pause began come back together: one halving per pause
        rate = current if row["paused_until"] > now else max(current / 2, configured * MIN_RATE_SHARE)
        row.update(rate=rate, paused_until=max(row["paused_until"], now + pause), last_throttle=now,
                   last_reply=reply[:300], last_reply_at=now)
        self._write(provider, row, now)
        return float(rate)

    async def blocked(self, provider: str, reply: str, spike: int, pause: float, scope: str) -> float | None:
        m, row, now = self._m(provider), self.row(provider), time.time()
        m.blocks = [t for t in m.blocks if now - t < BLOCK_WINDOW] + [now]
        seen = m.blocks + [t for p in self.peers.values() for t in p.blocks.get(provider, [])]
        blocks = sum(1 for t in seen if now - t < BLOCK_WINDOW and t > row["blocks_reset"])
        raise_it = blocks >= spike and not row["paused_for_blocks"]
        row.update(last_reply=reply[:300], last_reply_at=now)
        if raise_it:
            row.update(paused_until=now + pause, paused_for_blocks=True, alert_scope=scope, alert_since=now)
        self._write(provider, row, now)
        return now if raise_it else None

    async def clean(self, provider: str, configured: float, recovery: float) -> tuple[str, float] | None:
        if provider not in self.rows:
            return None
        row, now, changed, ended = self.row(provider), time.time(), False, None
        rate = row["rate"]
        if rate is not None and rate < configured and now - max(row["last_throttle"], row["last_step"]) >= recovery:
            grown = rate + configured / 4
            row.update(rate=None if grown >= configured else grown, last_step=now)
            changed = True
        if row["paused_for_blocks"] and row["paused_until"] <= now:
            row.update(paused_for_blocks=False, blocks_reset=now)
            ended, changed = (row["alert_scope"] or "|", row["alert_since"] or now), True
        if changed:
            self._write(provider, row, now)
        return ended

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
        held = {name: len(m.leases) for name, m in self.mine.items() if m.leases}
        for peer in self._alive(now):
            for name, n in peer.held.items():
                held[name] = held.get(name, 0) + n
        out = []
        for name in sorted(set(self.rows) | {n for n, c in held.items() if c}):
            row = self.row(name)
            out.append(ProviderView(name, row["rate"], row["paused_until"] if row["paused_until"] > now else 0.0,
                                    row["rate"] is not None, row["last_reply"], row["last_reply_at"],
                                    held.get(name, 0), bool(row["paused_for_blocks"])))
        return out

    # ------------------------------------------------------------ sharing
    def _heartbeat(self, now: float) -> tuple[str, bytes]:
        value = {"k": "relay", "p": self.me, "at": now,
                 "want": sorted(name for name, m in self.mine.items() if self._wants(m, now)),
                 "held": {name: len(m.leases) for name, m in self.mine.items() if m.leases},
                 "blocks": {name: [t for t in m.blocks if now - t < BLOCK_WINDOW]
                            for name, m in self.mine.items() if m.blocks},
                 "warm": self.warm}
        return f"relay|{self.me}", json.dumps(value).encode()

    async def _flush(self) -> None:
        rows, self._unsent = self._unsent, {}
        records = [(f"provider|{name}", json.dumps({"k": "provider", "name": name, "row": row}).encode())
                   for name, row in rows.items()]
        records.append(self._heartbeat(time.time()))
        try:
            await self.log.append_many(ev.Topic.SHAPING, records)
        except BaseException:
            self._unsent = {**rows, **self._unsent}
            raise

    async def _publish_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), HEARTBEAT)
            self._kick.clear()
            try:
                await self._flush()
            except Exception:  # the log is down: the next heartbeat carries it all
                log.debug("shaping state not published", exc_info=True)
                await asyncio.sleep(HEARTBEAT)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            try:
                value = json.loads(rec.value)
                if value["k"] == "relay" and value["p"] != self.me:
                    self.peers[value["p"]] = _Peer(float(value["at"]), set(value["want"]), dict(value["held"]),
                                                   dict(value["blocks"]), dict(value["warm"]))
                elif value["k"] == "provider":
                    row, name = value["row"], value["name"]
                    if list(row["v"]) > list(self.row(name)["v"]):
                        self.rows[name] = {**ROW_DEFAULTS, **row}
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable shaping record at %s/%s", rec.partition, rec.offset)
