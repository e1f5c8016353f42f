"""The housekeeping role: the duties a data dir needs run exactly once, whatever the number
of relay processes over it.

- **Release scheduled sends**: the relays hold requests for later in the data dir's
  ``scheduled.sqlite3`` (services/relay/scheduler.py); one releaser puts them back on
  ``email.requests`` when due (two would release each one twice).
- **Forward retries**: one delay forwarder per retry level (services/relay/delay_forwarder.py),
  consumer groups ``relay-retry-<level>``. The embedded log gives a group's partitions to one
  consumer only; over Kafka the group shares them among however many run.
- **Receive bounces and received mail**: the inbound SMTP server on
  ``POSTLINE_INBOUND_SMTP_PORT`` (one listener per port), and the expiry of received mail
  past its service's retention (services/relay/inbound/retention.py, docs/receiving.md).
- **Scheduled DKIM rotation** (services/api/dkim_rotation.py): starts the rotations that are
  due and moves signing to pending key sets once DNS shows them, hourly.
- **Retention and compaction of the embedded log** (shared/log/retention.py). Over Kafka the
  broker applies the topic configs itself: this duty only waits.

Where it runs: ``postline all`` places it in the background process beside analytics and
webhooks (services/supervisor.py); a process started as ``postline relay`` owns its data dir
alone and runs it too (services/roles.py, ``COMMAND_ROLES``): a Kubernetes relay pod or a
compose relay releases the sends held on its own volume and listens for bounces.
``postline housekeeping`` runs it alone.
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from services.api.dkim_rotation import run_dkim_rotation
from services.relay.delay_forwarder import DelayForwarder
from services.relay.inbound.retention import run_received_retention
from services.relay.inbound.server import serve as serve_inbound
from services.relay.scheduler import Scheduler
from shared import events as ev
from shared.log.retention import run_retention
from shared.runtime import Runtime


class Housekeeping:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.scheduler = Scheduler(runtime.settings.data_dir / "scheduled.sqlite3", runtime.log)

    def duties(self, stop: asyncio.Event) -> dict[str, Coroutine[Any, Any, None]]:
        """Each duty by name; each runs until ``stop`` is set."""
        lg, levels = self.runtime.log, len(self.runtime.settings.retry_delays)  # bounded at start-up
        duties: dict[str, Coroutine[Any, Any, None]] = {
            "release-scheduled": self.scheduler.run(stop),
            "inbound-smtp": serve_inbound(self.runtime, stop),
            "received-retention": run_received_retention(self.runtime, stop),
            "log-retention": run_retention(lg, self.runtime.settings, stop),
            "dkim-rotation": run_dkim_rotation(self.runtime, stop),
        }
        for level in range(levels):
            forwarder = DelayForwarder(lg, lg.consumer([ev.retry_topic(level)], f"relay-retry-{level}"))
            duties[f"forward-retry-{level}"] = forwarder.run(stop)
        return duties

    async def run(self, stop: asyncio.Event) -> None:
        """Run every duty until ``stop``. A duty that fails raises here (the others are
        cancelled): the role fails, and its supervisor restarts the process."""
        tasks = [asyncio.create_task(coro, name=name) for name, coro in self.duties(stop).items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self.scheduler.close()
