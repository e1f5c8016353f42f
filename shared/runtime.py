"""What one process holds: settings, the event log, the control plane, the analytics
store and (embedded) the dev inbox. Roles (api, relay, ...) are built on top of it."""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from shared import events as ev
from shared.control.plane import ControlPlane
from shared.crypto import hash_secret, new_admin_token
from shared.data_dir import secure as secure_data_dir
from shared.devinbox import DevInbox
from shared.log import open_log
from shared.log.port import EventLog
from shared.settings import Settings
from shared.store import open_store
from shared.store.port import AnalyticsStore

if TYPE_CHECKING:  # the API role's parts; shared/ never imports services/ at run time
    from services.api.idempotency import Idempotency
    from services.api.limits import RateLimiter
    from services.api.routes.tracking import Recorder
    from services.api.sending import RecentSends

log = logging.getLogger(__name__)
DEFAULT_WORKSPACE = "default"


@dataclass
class Runtime:
    settings: Settings
    log: EventLog = None
    control: ControlPlane = None
    store: AnalyticsStore | None = None
    inbox: DevInbox | None = None
    roles: dict[str, asyncio.Task] = field(default_factory=dict)  # role → its task (services/roles.py), for /readyz
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)  # a role's own /readyz checks (relay: ledger_writable)
    relay_share: tuple[int, int] = (0, 1)  # (index, count): this relay process's share of the embedded log's partitions
    shared_ports: bool = False  # one of several API processes of `postline all`: bind with SO_REUSEPORT
    # Parts of the API role, set by services/api/app.py (None in the other roles):
    limits: RateLimiter | None = None             # per-service rate limits
    idempotency: Idempotency | None = None        # Idempotency-Key claims and responses
    recent: RecentSends | None = None             # sends this process accepted, for GET /emails/{id}
    tracking: Recorder | None = None              # opens/clicks/unsubscribes this process records
    schedule_changes: OrderedDict[str, dict] = field(default_factory=OrderedDict)  # PATCH/cancel not yet seen by the relay

    async def start(self, with_store: bool = True, migrate: bool = True) -> None:
        """Open the log, replay the control topic, open the store. Migrations run here for
        embedded chDB and for roles that own the schema; against a ClickHouse server the other
        roles leave them to ``postline migrate`` and start even while ClickHouse is down."""
        s = self.settings
        secure_data_dir(s.data_dir)  # before anything is created in it: owner-only files
        self.log = open_log(s)
        await self.log.start()
        self.control = ControlPlane(self.log, s.control_catch_up_timeout)
        await self.control.start()
        if s.delivery == "inbox":
            self.inbox = DevInbox(s.data_dir / "inbox.sqlite3")
        if with_store:
            self.store = open_store(s)
            if migrate or not s.clickhouse_url:
                await self.store.migrate()

    async def ensure_default_workspace(self) -> str | None:
        """Create the default workspace on first run; returns its new admin token (shown
        once), or None when it already exists or POSTLINE_ADMIN_TOKEN names the token."""
        ws = self.control.state.workspaces.get(DEFAULT_WORKSPACE)
        configured = self.settings.admin_token
        if ws and (not configured or ws.token_hash == hash_secret(configured)):
            return None
        token = configured or new_admin_token()
        await self.control.save(ev.WorkspaceSaved(workspace_id=DEFAULT_WORKSPACE, name="Default workspace",
                                                  token_hash=hash_secret(token)))
        return None if configured else token

    async def create_workspace(self, name: str, workspace_id: str | None = None) -> tuple[str, str]:
        """Create (or, given an id, re-key) a workspace; returns ``(id, admin token)`` — the token once."""
        token = new_admin_token()
        wid = workspace_id or ev.new_id()
        await self.control.save(ev.WorkspaceSaved(workspace_id=wid, name=name, token_hash=hash_secret(token)))
        return wid, token

    async def close(self) -> None:
        if self.limits:
            await self.limits.quota.close()
        if self.control:
            await self.control.close()
        if self.store:
            await self.store.close()
        if self.inbox:
            self.inbox.close()
        if self.idempotency:  # before the log it follows (Kafka mode)
            await self.idempotency.close()
        if self.log:
            await self.log.close()
