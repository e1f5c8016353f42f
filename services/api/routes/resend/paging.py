"""Resend's list envelope and its cursor paging: ``{"object": "list", "has_more", "data"}``,
``limit`` (1–100), ``after`` / ``before`` (the id of an item of the previous page; one or the
other). Lists are newest first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from fastapi import Query

from services.api.errors import http_error
from services.api.refusal import Refusal

T = TypeVar("T")


@dataclass(frozen=True)
class Paging:
    limit: int | None
    after: str | None
    before: str | None


def paging(limit: int | None = Query(None, ge=1, le=100, description="1–100; all items when left out (emails: 20)."),
           after: str | None = Query(None, max_length=320, description="The id after which the page starts (older)."),
           before: str | None = Query(None, max_length=320, description="The id before which the page ends (newer).")
           ) -> Paging:
    """The query's paging; 400 when both ``after`` and ``before`` are given."""
    if after and before:
        raise http_error(Refusal(400, "give after or before, not both", "before"))
    return Paging(limit, after, before)


def iso(store_time: str) -> str:
    """A store's ``YYYY-MM-DD hh:mm:ss.fff`` (UTC) as ISO 8601, as the API's other times."""
    return store_time.replace(" ", "T") + "Z" if " " in store_time else store_time


def envelope(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "has_more": has_more, "data": data}


def page_of(items: Sequence[T], id_of: Callable[[T], str], p: Paging) -> tuple[list[T], bool]:
    """One page of ``items`` (newest first) and whether more follow in the paging's direction;
    400 naming the cursor when its id is not in the list."""
    cursor = p.after or p.before
    start, end = 0, len(items)
    if cursor is not None:
        at = next((i for i, item in enumerate(items) if id_of(item) == cursor), None)
        if at is None:
            raise http_error(Refusal(400, f"no item with id {cursor!r} in this list", "after" if p.after else "before"))
        start, end = (at + 1, len(items)) if p.after else (0, at)
    window = list(items[start:end])
    if p.limit is None or len(window) <= p.limit:
        return window, False
    return (window[:p.limit], True) if p.before is None else (window[-p.limit:], True)


def newest_first_page(items: Sequence[T], created_at: Callable[[T], Any], id_of: Callable[[T], str],
                      view: Callable[[T], dict[str, Any]], p: Paging) -> dict[str, Any]:
    """Resend's list answer: ``items`` sorted newest first, one page of them, each as ``view``."""
    ordered = sorted(items, key=created_at, reverse=True)
    data, more = page_of(ordered, id_of, p)
    return envelope([view(item) for item in data], more)
