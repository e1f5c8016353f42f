"""Who holds an Idempotency-Key: the state of one (service, key) and the one rule that
changes it, applied in the same order by every process (embedded: inside the log's write
transaction; Kafka: in the claims topic's order, by every replica that reads it).

A request *claims* the key (its body hash, a random owner token, a lease), then records
*done* with its response, or *releases* the key when it answered an error (nothing sent, so
a retry may try again, with any body). Changes are plain dicts (``kind``, ``owner``,
``hash``, ``at``, ``since``, and ``lease_until`` or ``response``), so they travel as JSON records.

``since`` is when the key's current use began: the time of the claim that found it free, kept
by a takeover, by done and by a release (a released key is a ``released`` state that keeps
it), for 24 h: a claim 24 h or more after ``since`` begins a new use. The email id is derived
from the key, ``since`` and the body hash (keys.email_id_for), so within a use every send of
one body is one message — a takeover after a holder's lease ran out, a retry after an answer
that released the key but may have been appended all the same (the log did not confirm it) —
which the relay sends once, a send of another body is another message, and the key used
again after its 24 h is a new one (with an id from the key alone, the relay's ledger would
take the new send for the old, already delivered, message and send nothing). Claim, done and
release records carry the ``since`` their writer saw, which a replica that knows nothing of
the key (it reads a compacted claims topic) takes unless it is over; the claims topic keeps
every record 25 h before compaction may drop it (``min.compaction.lag.ms``,
shared/log/kafka.py; topics made before that setting compact sooner), so within a use every
replica reads its first claim. A change recorded before ``since`` was kept has none: such a
use keeps the id from the key alone, on every replica."""
from __future__ import annotations

import abc
from dataclasses import dataclass

TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Claim:
    owner: str                  # the token of the request that holds the key
    body_hash: str
    lease_until: float          # epoch seconds; after it a same-body request may take over
    at: float                   # when claimed, or when done (released: when its use began): the 24 h start from here
    response: dict | None = None  # the first response, once done
    since: float | None = None  # when this use of the key began (None: recorded before it was kept)

    @property
    def released(self) -> bool:
        """Freed by its holder's error answer: any body may claim it, continuing its use."""
        return self.owner == ""

    def live(self, now: float) -> bool:
        return self.at + TTL_SECONDS > now


def apply(state: Claim | None, change: dict) -> Claim | None:
    """The state after ``change``. A claim wins a free key (none, released or older than 24 h),
    or takes over an unfinished one whose lease ran out, for the same body only (the email id
    is the same, and the relay absorbs a repeated request); otherwise it loses and changes
    nothing. The first done records the response; a release frees only its owner's unfinished
    claim (the key stays ``released``, keeping its ``since``)."""
    kind, at = change["kind"], change["at"]
    if state is not None and not state.live(at):
        state = None
    if kind == "claim":
        takes_over = (state is not None and not state.released and state.response is None
                      and state.lease_until <= at and state.body_hash == change["hash"])
        if state is None or state.released or takes_over:
            return Claim(change["owner"], change["hash"], change["lease_until"], at, since=_since(state, change))
        return state
    if kind == "done":
        if state is None or state.released or (state.response is None and state.body_hash == change["hash"]):
            return Claim(change["owner"], change["hash"], at, at, change["response"], _since(state, change))
        return state
    if kind == "release":
        if state is None and change.get("since") is not None:  # the claim compacted away: the release says it
            state = Claim(change["owner"], change["hash"], at, at, since=change["since"])
        if state is not None and not state.released and state.response is None and state.owner == change["owner"]:
            # ``at``: when the use began, so every replica has the same state (and one without
            # ``since``, an older version's, still ends 24 h after its claim)
            freed = Claim("", state.body_hash, 0.0, state.at if state.since is None else state.since, None, state.since)
            return freed if freed.live(at) else None
    return state


def _since(state: Claim | None, change: dict) -> float | None:
    """The ``since`` of the state a claim or done makes: the use it continues (the state's,
    else the one its writer saw: a replica that knows nothing of the key), unless that use is
    over (24 h); else a use beginning now. None: recorded before ``since`` was kept (the
    key-only id)."""
    since = state.since if state is not None else change.get("since")
    return change["at"] if since is not None and since + TTL_SECONDS <= change["at"] else since


def claim(owner: str, body_hash: str, now: float, lease: float, since: float | None = None) -> dict:
    """``since``: the use a takeover continues (the held claim's); a free key's use begins ``now``."""
    return {"kind": "claim", "owner": owner, "hash": body_hash, "at": now, "lease_until": now + lease,
            "since": now if since is None else since}


def done(owner: str, body_hash: str, now: float, response: dict, since: float | None) -> dict:
    return {"kind": "done", "owner": owner, "hash": body_hash, "at": now, "response": response, "since": since}


def release(owner: str, body_hash: str, now: float, since: float | None) -> dict:
    return {"kind": "release", "owner": owner, "hash": body_hash, "at": now, "since": since}


class Claims(abc.ABC):
    """Where the claims of one installation are agreed (one implementation per log adapter)."""

    @abc.abstractmethod
    async def look(self, scope: str, key: str) -> Claim | None:
        """The state as this process knows it now (may lag behind the log; never blocks long)."""

    @abc.abstractmethod
    async def change(self, scope: str, key: str, change: dict) -> Claim | None:
        """Record ``change`` in the installation's one order, durably. For a claim, returns the
        state just after it (the claim won iff its owner holds it); for done and release the
        return value may be None. Raises the log's errors when it cannot be recorded."""

    @abc.abstractmethod
    async def changed(self, scope: str, key: str, timeout: float) -> None:
        """Return when the state of (scope, key) may have changed, or after ``timeout`` seconds."""

    async def close(self) -> None:
        """Release what the implementation holds."""
