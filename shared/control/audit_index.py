"""The audit entries a process keeps for reading (shared/audit.py has what they are).

Bounded: the newest ``KEPT_PER_WORKSPACE`` entries of each workspace (a few MB at most per
process), because every process replays the control topic and most never read the audit
log; every entry stays on the log (its own key: never compacted)."""
from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from shared import events as ev

KEPT_PER_WORKSPACE = 2_000


@dataclass
class AuditIndex:
    """The newest entries per workspace, ordered by (time, id): the order every process
    agrees on, whatever order it read the control topic's partitions in."""
    kept: int = KEPT_PER_WORKSPACE
    _by_workspace: dict[str, list[tuple[datetime, str, ev.AuditEntry]]] = field(default_factory=dict)
    _ids: dict[str, tuple[datetime, str]] = field(default_factory=dict)

    def add(self, entry: ev.AuditEntry) -> None:
        if entry.id in self._ids:
            return  # a copy (a producer retry): once is enough
        rows = self._by_workspace.setdefault(entry.workspace_id, [])
        bisect.insort(rows, (entry.time, entry.id, entry), key=lambda row: (row[0], row[1]))
        self._ids[entry.id] = (entry.time, entry.id)
        if len(rows) > self.kept:
            _, gone, _ = rows.pop(0)
            self._ids.pop(gone, None)

    def position(self, entry_id: str) -> tuple[datetime, str] | None:
        """Where entry ``entry_id`` sorts, when it is still kept (a cursor)."""
        return self._ids.get(entry_id)

    def newest(self, workspace_id: str, before: tuple[datetime, str] | None = None) -> Iterator[ev.AuditEntry]:
        """The workspace's entries, newest first, older than ``before`` when given."""
        rows = self._by_workspace.get(workspace_id, [])
        end = len(rows) if before is None else bisect.bisect_left(rows, before, key=lambda row: (row[0], row[1]))
        for i in range(end - 1, -1, -1):
            yield rows[i][2]
