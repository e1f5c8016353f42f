"""Management operations: the use cases behind the management API (services/api/routes/)
and the dashboard (services/api/dashboard/pages/), one function per operation.

Each takes the runtime and the already-authorised owner (a workspace or a service) and returns
a value or a ``Refusal`` (services/api/refusal.py); none knows HTTP or HTML. The routes map a
refusal to an HTTP error (``errors.http_error``), the pages to a message on the page.

Changes go through ``ControlPlane.change`` (``changed`` below): only the fields given are
written, so no concurrent change is lost; a change that lost a race is a 409 refusal, one
whose entity was deleted meanwhile a 404. ``ControlBehind`` (the control log could not be
read back in time) stays an exception: an infrastructure fault the edge answers 503."""
from __future__ import annotations

from typing import Any, TypeVar, cast

from services.api.refusal import Refusal
from shared import events as ev
from shared.control.errors import ChangeRefused
from services.api.context import ApiContext

Entity = TypeVar("Entity", bound=ev.ControlRecord)


async def changed(rt: ApiContext, entity: Entity, **fields: Any) -> Entity | Refusal:
    """``entity`` with ``fields`` set, once applied here; 409/404 refusals when it lost a race."""
    try:
        result = await rt.control.change(entity, **fields)
    except ChangeRefused as exc:
        return Refusal(exc.status, str(exc))
    return cast(Entity, result)  # the control plane returns the entity's own kind of record


async def deleted(rt: ApiContext, entity: ev.ControlRecord) -> Refusal | None:
    """Delete ``entity`` (a ``deleted`` change); None when done."""
    outcome = await changed(rt, entity, deleted=True)
    return outcome if isinstance(outcome, Refusal) else None
