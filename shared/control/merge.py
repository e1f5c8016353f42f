"""How one control record changes the entity held for its key: the rules that make a change
apply the fields it sets and nothing else (docs/architecture.md: no lost updates).

A record at offset ``o`` with the entity ``held`` (None: never seen; a record with ``deleted``
set: a tombstone) and the key's ``versions`` (field → offset of the change that last set it;
``"*"`` → offset of the last whole-state record):

1. A whole-state record (``changed`` None: a create, or a writer from before changes existed)
   replaces the entity, as it always did → WHOLE.
2. The first record of a key (a replay that starts after compaction) is taken as it is, with
   the versions it carries → WHOLE.
3. A change of a deleted entity → GONE: a change decided on a stale view never resurrects it.
4. A change of a field set again after the version the change was decided on (``based_on``),
   or after a whole-state record, → CONFLICT: refused as a whole, its writer answers 409. So
   two concurrent changes of different fields both apply; of one field, the later is refused.
5. Otherwise the fields it sets are merged onto ``held``; the rest of the record (its writer's
   view, maybe older than ``held``) is not used. An anchor (``changed`` []) sets nothing.

For 4 and 5 the outcome says whether the record alone now equals the entity (fields and
versions): WHOLE if so, else PARTIAL. Compaction keeps only the latest record per key, so a
PARTIAL (or refused) latest record would replay as a stale state: its writer follows it with
an anchor, a record of the entity's whole state that changes nothing (ControlPlane.change).
Every process applies the same records in the same order with these rules, so all agree."""
from __future__ import annotations

import enum

from shared import events as ev

WHOLE_KEY = "*"


class Outcome(enum.Enum):
    WHOLE = "whole"        # took effect; the record alone holds the entity's state
    PARTIAL = "partial"    # took effect; the entity differs from the record (needs an anchor)
    IGNORED = "ignored"    # an earlier position, or a copy of an earlier record
    CONFLICT = "conflict"  # refused: a field it sets changed after the view it was based on
    GONE = "gone"          # refused: the entity is deleted

    def __bool__(self) -> bool:  # "took effect", as ``apply`` answered before outcomes existed
        return self in (Outcome.WHOLE, Outcome.PARTIAL)


def fields_of(event: ev.ControlRecord) -> list[str]:
    """The entity fields a change sets (unknown names from a newer writer are skipped)."""
    model = type(event).model_fields
    return [f for f in event.changed or () if f in model and f not in ev.CONTROL_META]


def same_state(a: ev.ControlRecord, b: ev.ControlRecord) -> bool:
    """Equal entity state, whatever the records' ids, times and change metadata."""
    return a.model_dump(exclude=set(ev.CONTROL_META)) == b.model_dump(exclude=set(ev.CONTROL_META))


def decide(event: ev.ControlRecord, held: ev.ControlRecord | None, versions: dict[str, int] | None,
           offset: int) -> tuple[Outcome, ev.ControlRecord, dict[str, int] | None]:
    """(outcome, the entity afterwards, the key's versions afterwards) of ``event`` at ``offset``.
    Pure: the caller stores the result."""
    if event.changed is None:
        return Outcome.WHOLE, event, {WHOLE_KEY: offset}
    fields = fields_of(event)
    claimed = {**event.versions, **{f: offset for f in fields}}  # the versions the record says follow it
    if held is None:
        return Outcome.WHOLE, event, claimed
    if held.deleted and fields:
        return Outcome.GONE, held, versions
    current = versions or {}
    based_on = -1 if event.based_on is None else event.based_on
    since = current.get(WHOLE_KEY, -1)
    if any(max(current.get(f, -1), since) > based_on for f in fields):
        return Outcome.CONFLICT, held, versions
    entity = held
    if fields:
        entity = held.model_copy(update={**{f: getattr(event, f) for f in fields}, "id": event.id, "time": event.time})
    after = {**current, **{f: offset for f in fields}}
    whole = after == claimed and same_state(entity, event)
    return (Outcome.WHOLE if whole else Outcome.PARTIAL), entity, after
