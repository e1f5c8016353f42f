"""What one process holds: settings, the event log, the control plane, the analytics
store and (embedded) the dev inbox. Roles (api, relay, ...) are built on top of it."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from shared import events as ev
from shared.control.plane import ControlPlane
from shared.crypto import hash_secret, new_admin_token
from shared.data_dir import secure as secure_data_dir
from shared.devinbox import DevInbox
from shared.log import open_log
from shared.log.port import EventLog, LogNotStarted
from shared.settings import Settings
from shared.store import open_store
from shared.store.port import AnalyticsStore

log = logging.getLogger(__name__)
DEFAULT_WORKSPACE = "default"


@dataclass
class Runtime:
    """The process's parts; ``log`` and ``control`` exist once ``start`` has run (reading them
    before raises ``LogNotStarted``). A role's own parts live in its context
    (services/api/context.py ``ApiContext``, services/relay/handler.py ``RelayContext``)."""

    settings: Settings
    store: AnalyticsStore | None = None
    inbox: DevInbox | None = None
    roles: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # role → its task (services/roles.py), for /readyz
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)  # a role's own /readyz checks (relay: ledger_writable)
    relay_share: tuple[int, int] = (0, 1)  # (index, count): this relay process's share of the embedded log's partitions
    shared_ports: bool = False  # one of several API processes of `postline all`: bind with SO_REUSEPORT
    contexts: dict[str, object] = field(default_factory=dict)  # role → its context, built once per process
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # the contexts' close, run before the log's
    _log: EventLog | None = field(default=None, repr=False)
    _control: ControlPlane | None = field(default=None, repr=False)

    @property
    def log(self) -> EventLog:
        """The event log (``shared/log``), bounded by the append deadline."""
        return self.event_log()

    @property
    def control(self) -> ControlPlane:
        """The control plane: the replayed control topic, and the way to change it."""
        return self.control_plane()

    def event_log(self) -> EventLog:
        if self._log is None:
            raise LogNotStarted("the runtime is not started")
        return self._log

    def control_plane(self) -> ControlPlane:
        if self._control is None:
            raise LogNotStarted("the runtime is not started")
        return self._control

    async def start(self, with_store: bool = True, migrate: bool = True) -> None:
        """Open the log, replay the control topic, open the store. Migrations run here for
        embedded chDB and for roles that own the schema; against a ClickHouse server the other
        roles leave them to ``postline migrate`` and start even while ClickHouse is down."""
        s = self.settings
        secure_data_dir(s.data_dir)  # before anything is created in it: owner-only files
        self._log = open_log(s)
        await self._log.start()
        self._control = ControlPlane(self._log, s.control_catch_up_timeout)
        await self._control.start()
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
        for close in reversed(self.closers):  # the roles' parts, some following the log (Kafka mode)
            await close()
        self.closers.clear()
        if self._control:
            await self._control.close()
        if self.store:
            await self.store.close()
        if self.inbox:
            self.inbox.close()
        if self._log:
            await self._log.close()
