"""The API role's context: what every route, the send fast path and SMTP submission read,
typed. One per process (``ApiContext.of``), however many apps a test builds on its runtime:
the rate counters, the idempotency claims and the recent sends are the process's."""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from services.api.idempotency import Idempotency, open_idempotency
from services.api.limits import RateLimiter
from services.api.sending import RecentSends
from services.api.throttle import Throttle
from services.relay.shaping import open_shaping
from services.relay.shaping.port import ShapingStore
from shared.control.plane import ControlPlane
from shared.devinbox import DevInbox
from shared.log.port import EventLog
from shared.quota import open_quota
from shared.runtime import Runtime
from shared.settings import Settings
from shared.store.port import AnalyticsStore

if TYPE_CHECKING:  # routes.tracking imports this module's users
    from services.api.routes.tracking import Recorder

ROLE = "api"


@dataclass
class ApiContext:
    runtime: Runtime                 # the process's parts (settings, log, control, store, inbox)
    limits: RateLimiter              # per-service rate limits
    idempotency: Idempotency         # Idempotency-Key claims and responses
    recent: RecentSends              # sends this process accepted, for GET /emails/{id}
    throttle: Throttle               # failed credentials per address and account (on the same counters)
    shaping: ShapingStore            # the relays' shaping state, read for /api/email/shaping and ip-pools
    tracking: Recorder | None = None  # opens/clicks/unsubscribes this process records (made on first use)
    schedule_changes: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)  # PATCH/cancel not yet seen by the relay

    @classmethod
    def of(cls, runtime: Runtime) -> ApiContext:
        """The API context of ``runtime``'s process: built on the first call (after
        ``runtime.start``), the same one after; its parts are closed with the runtime."""
        made = runtime.contexts.get(ROLE)
        if isinstance(made, ApiContext):
            return made
        s = runtime.settings
        quota = open_quota(runtime.event_log(), s)
        ctx = cls(runtime,
                  limits=RateLimiter(quota, runtime.store, s.rate_per_minute,
                                     s.rate_per_day, overrides=lambda sid: runtime.control_plane().state.rate_overrides(sid)),
                  idempotency=open_idempotency(runtime.event_log(), s),
                  # The embedded log finds any request by its id (email_lookup.accepted_elsewhere), so
                  # RecentSends only has to bridge analytics' few seconds of lag there; over Kafka it is
                  # the only answer while analytics is behind or down, so it keeps more.
                  recent=RecentSends(5_000 if runtime.event_log().keyed_lookups else 20_000),
                  throttle=Throttle(quota, s.auth_free_failures),
                  shaping=open_shaping(s, runtime.event_log(), observer=True))
        runtime.contexts[ROLE] = ctx
        runtime.closers.append(ctx.close)
        return ctx

    async def close(self) -> None:
        await self.limits.quota.close()
        await self.shaping.close()
        await self.idempotency.close()  # before the log it follows (Kafka mode): the runtime closes that after

    # The process's parts, read through the context so API code takes one argument.
    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def log(self) -> EventLog:
        return self.runtime.event_log()

    @property
    def control(self) -> ControlPlane:
        return self.runtime.control_plane()

    @property
    def store(self) -> AnalyticsStore | None:
        return self.runtime.store

    @property
    def inbox(self) -> DevInbox | None:
        return self.runtime.inbox

    @property
    def roles(self) -> dict[str, asyncio.Task[None]]:
        return self.runtime.roles

    @property
    def checks(self) -> dict[str, Callable[[], bool]]:
        return self.runtime.checks

    @property
    def shared_ports(self) -> bool:
        return self.runtime.shared_ports
