"""``Idempotency-Key`` (docs/compatibility.md, docs/architecture.md): the same key with the same body within 24 h returns the
first response and sends nothing new; the same key with another body is a 409 — whichever
API process or replica each request reaches.

Decided where the request is recorded, not in process memory (``gate.py`` runs the protocol:
claim, send, record the response; duplicates wait for it):
- Embedded (``postline all``, N API processes over one data dir): the claim is a row of the
  event log's own SQLite file, checked and written inside the log's write transaction
  (``SqliteLog.append_guarded``), which already serialises every writer of every process —
  exact, with no lock or fsync of its own (``sqlite_claims.py``). Chosen over a claim row in a
  separate SQLite file under ``BEGIN IMMEDIATE``: that file would need its own fsync and its
  own lock waits (SQLite's busy handler sleeps), and would be one more file to keep.
- Kafka (replicas share no disk): claims are records on ``postline.idempotency`` keyed by
  (service, key); the first claim in log order holds the key (``log_claims.py``).

The email id is derived from (service, key), when the key's use began (claims.py,
``since``) and the body, so a request repeated after a holder's lease ran out (it died
mid-way), or after an answer the log did not confirm, is the same message to the relay,
which never delivers one (email id, recipient) twice; the key used again after its 24 h is
a new message. Requests without the header pay nothing of this."""
from __future__ import annotations

from services.api.idempotency.gate import Idempotency
from services.api.idempotency.keys import body_hash, check_key, email_id_for, item_email_id
from shared.log.port import EventLog
from shared.settings import Settings

__all__ = ["Idempotency", "body_hash", "check_key", "email_id_for", "item_email_id", "open_idempotency"]


def open_idempotency(log: EventLog, settings: Settings) -> Idempotency:
    """The claims that match the log: in the embedded log's transaction, else on the Kafka topic."""
    if settings.kafka_bootstrap:
        from services.api.idempotency.log_claims import LogClaims

        # reading one's own claim back takes a fetch; allow what an append may take
        return Idempotency(LogClaims(log, reach_timeout=settings.log_append_timeout), settings.idempotency_lease)
    from services.api.idempotency.sqlite_claims import SqliteClaims

    return Idempotency(SqliteClaims(log), settings.idempotency_lease)
