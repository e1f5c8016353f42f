"""In-memory projection of the control topic.

Each control event carries an entity's whole state and is keyed by the entity (a key always
lives on one partition, so offsets order a key's records). ``apply`` is idempotent: a record
at or before the key's last position, or a copy of one of the key's earlier records, changes
nothing. How a change merges onto the entity held: shared/control/merge.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import events as ev
from shared.control.audit_index import AuditIndex
from shared.control.merge import WHOLE_KEY, Outcome, decide


def entity_key(event: ev.Event) -> str:
    match event:
        case ev.AuditEntry():  # one key per entry: compaction never removes one
            return f"audit:{event.id}"
        case ev.WorkspaceSaved():
            return f"workspace:{event.workspace_id}"
        case ev.ServiceSaved():
            return f"service:{event.service_id}"
        case ev.ApiKeySaved():
            return f"api_key:{event.key_id}"
        case ev.DomainSaved():
            return f"domain:{event.domain_id}"
        case ev.SandboxRecipientSaved():
            return f"sandbox_recipient:{event.recipient_id}"
        case ev.SuppressionSaved():
            return f"suppression:{event.service_id}:{event.email}"
        case ev.WebhookSaved():
            return f"webhook:{event.webhook_id}"
        case ev.UserSaved():
            return f"user:{event.user_id}"
        case ev.SessionSaved():
            return f"session:{event.session_id}"
        case ev.UserTokenSaved():
            return f"user_token:{event.token_id}"
        case ev.ReceivingRuleSaved():
            return f"receiving_rule:{event.rule_id}"
        case ev.TemplateSaved():
            return f"template:{event.template_id}"
        case ev.TemplateVersionSaved():
            return f"template_version:{event.version_id}"
        case ev.ShapingSaved():
            return "shaping:installation"
        case ev.IpPoolSaved():
            return f"ip_pool:{event.pool_id}"
    raise TypeError(f"not a control event: {type(event).__name__}")


RECENT_IDS = 16  # per entity: how far back a re-appended copy of a change is recognised


@dataclass
class ControlState:
    workspaces: dict[str, ev.WorkspaceSaved] = field(default_factory=dict)
    services: dict[str, ev.ServiceSaved] = field(default_factory=dict)
    api_keys: dict[str, ev.ApiKeySaved] = field(default_factory=dict)
    domains: dict[str, ev.DomainSaved] = field(default_factory=dict)
    sandbox: dict[str, ev.SandboxRecipientSaved] = field(default_factory=dict)
    suppressions: dict[tuple[str, str], ev.SuppressionSaved] = field(default_factory=dict)
    webhooks: dict[str, ev.WebhookSaved] = field(default_factory=dict)
    users: dict[str, ev.UserSaved] = field(default_factory=dict)
    sessions: dict[str, ev.SessionSaved] = field(default_factory=dict)
    user_tokens: dict[str, ev.UserTokenSaved] = field(default_factory=dict)
    receiving_rules: dict[str, ev.ReceivingRuleSaved] = field(default_factory=dict)
    templates: dict[str, ev.TemplateSaved] = field(default_factory=dict)
    template_versions: dict[str, ev.TemplateVersionSaved] = field(default_factory=dict)
    ip_pools: dict[str, ev.IpPoolSaved] = field(default_factory=dict)
    shaping: ev.ShapingSaved | None = None  # the operator's provider limits (services/relay/shaping/)
    audit: AuditIndex = field(default_factory=AuditIndex)  # the newest entries per workspace (shared/audit.py)
    _positions: dict[str, int] = field(default_factory=dict)
    _recent: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # key → recent (event id, offset)
    _latest: dict[str, ev.ControlRecord] = field(default_factory=dict)  # key → entity, or its tombstone
    _versions: dict[str, dict[str, int]] = field(default_factory=dict)  # key → field → offset last set (merge.py)
    _set_at: dict[str, int] = field(default_factory=dict)  # key → offset of the record its entity was set by
    _by_token: dict[str, str] = field(default_factory=dict)
    _by_key_hash: dict[str, str] = field(default_factory=dict)
    _by_user_token_hash: dict[str, str] = field(default_factory=dict)
    # partition → the offset after the last record applied from it: how far this state has
    # read the control log (what a send request records, and what a relay waits for).
    positions: dict[int, int] = field(default_factory=dict)

    def advance(self, partition: int, offset: int) -> None:
        """Note that the record at ``offset`` of ``partition`` has been applied."""
        if offset >= self.positions.get(partition, 0):
            self.positions[partition] = offset + 1

    def reached(self, position: dict[int, int]) -> bool:
        """True when this state has read at least as far as ``position`` on every partition."""
        return all(self.positions.get(p, 0) >= off for p, off in position.items())

    def apply(self, event: ev.ControlRecord | ev.AuditEntry, offset: int | None = None) -> Outcome:
        """Apply one control record; the outcome is truthy when it took effect (merge.py), falsy
        when it is older than what is held (an earlier log position, or a copy of one of the
        key's earlier changes) or was refused. An audit entry goes to the audit index."""
        if isinstance(event, ev.AuditEntry):
            self.audit.add(event)
            return Outcome.WHOLE
        key = entity_key(event)
        if offset is not None:
            if self._positions.get(key, -1) >= offset:
                return Outcome.IGNORED
            self._positions[key] = offset
        if self._is_copy(key, event, offset):
            return Outcome.IGNORED
        held = self._latest.get(key)
        outcome, entity, versions = decide(event, held, self._versions.get(key), -1 if offset is None else offset)
        if versions is not None:
            self._versions[key] = versions
        if entity is not held:
            self._store(key, held, entity)
            self._set_at[key] = -1 if offset is None else offset
        return outcome

    def _is_copy(self, key: str, event: ev.ControlRecord, offset: int | None) -> bool:
        """A copy of an earlier change appended again later (a producer retry without
        idempotence) must not undo the changes after it: each change has its own event id,
        so a key's recent ids recognise the copy. (Log order, not clocks, decides otherwise.)
        A copy of the latest whole state re-applies harmlessly; a copy of the latest change
        is ignored too, so it does not look like a newer change of its fields."""
        seen = self._recent.get(key, ())
        ids = [i for i, _ in seen]
        if event.id in ids[:-1] or (ids and ids[-1] == event.id and event.changed is not None):
            return True
        if not ids or ids[-1] != event.id:
            self._recent[key] = (*seen[-(RECENT_IDS - 1):], (event.id, -1 if offset is None else offset))
        return False

    def _store(self, key: str, old: ev.ControlRecord | None, new: ev.ControlRecord) -> None:
        """Hold ``new`` as the key's entity (or tombstone), with the tables and indexes."""
        self._latest[key] = new
        match new:
            case ev.WorkspaceSaved():
                self._put(self.workspaces, new.workspace_id, new)
                self._index(self._by_token, getattr(old, "token_hash", None), new.token_hash, new.workspace_id, new)
            case ev.ServiceSaved():
                self._put(self.services, new.service_id, new)
            case ev.ApiKeySaved():
                self._put(self.api_keys, new.key_id, new)
                self._index(self._by_key_hash, getattr(old, "key_hash", None), new.key_hash, new.key_id, new)
            case ev.DomainSaved():
                self._put(self.domains, new.domain_id, new)
            case ev.SandboxRecipientSaved():
                self._put(self.sandbox, new.recipient_id, new)
            case ev.SuppressionSaved():
                self._put(self.suppressions, (new.service_id, new.email), new)
            case ev.WebhookSaved():
                self._put(self.webhooks, new.webhook_id, new)
            case ev.UserSaved():
                self._put(self.users, new.user_id, new)
            case ev.SessionSaved():
                self._put(self.sessions, new.session_id, new)
            case ev.UserTokenSaved():
                self._put(self.user_tokens, new.token_id, new)
                self._index(self._by_user_token_hash, getattr(old, "token_hash", None), new.token_hash, new.token_id, new)
            case ev.ReceivingRuleSaved():
                self._put(self.receiving_rules, new.rule_id, new)
            case ev.TemplateSaved():
                self._put(self.templates, new.template_id, new)
            case ev.TemplateVersionSaved():
                self._put(self.template_versions, new.version_id, new)
            case ev.ShapingSaved():
                self.shaping = None if new.deleted else new
            case ev.IpPoolSaved():
                self._put(self.ip_pools, new.pool_id, new)

    @staticmethod
    def _index(index: dict[str, str], old_hash: str | None, new_hash: str, ident: str, event: ev.ControlRecord) -> None:
        """Keep a secret-hash → id index in step: the old hash out, the new one in unless deleted."""
        if old_hash is not None:
            index.pop(old_hash, None)
        if not event.deleted:
            index[new_hash] = ident

    @staticmethod
    def _put(table: dict[Any, Any], ident: object, event: ev.ControlRecord) -> None:
        if event.deleted:
            table.pop(ident, None)
        else:
            table[ident] = event

    # ------------------------------------------------------------ change bookkeeping
    def entity(self, key: str) -> ev.ControlRecord | None:
        """The entity of ``key`` as held now: None if never seen, a record with ``deleted`` set
        if deleted (kept, so a late change is known to be of a deleted entity)."""
        return self._latest.get(key)

    def position_of(self, entity: ev.ControlRecord) -> int | None:
        """The log offset of the record ``entity`` was read from (the entity held now, or one of
        its key's recent records), or None when it is older than those."""
        key = entity_key(entity)
        held = self._latest.get(key)
        if held is not None and held.id == entity.id:
            return self._set_at.get(key)
        return next((off for i, off in self._recent.get(key, ()) if i == entity.id), None)

    def versions_of(self, key: str) -> dict[str, int]:
        """Field → offset of the change that last set it (``"*"``: the last whole state)."""
        return dict(self._versions.get(key) or {WHOLE_KEY: self._positions.get(key, -1)})

    # ------------------------------------------------------------ lookups
    def workspace_by_token_hash(self, token_hash: str) -> ev.WorkspaceSaved | None:
        wid = self._by_token.get(token_hash)
        return self.workspaces.get(wid) if wid else None

    def api_key_by_hash(self, key_hash: str) -> ev.ApiKeySaved | None:
        kid = self._by_key_hash.get(key_hash)
        return self.api_keys.get(kid) if kid else None

    def service(self, workspace_id: str, service_id: str) -> ev.ServiceSaved | None:
        """The service if it exists and belongs to ``workspace_id`` (tenant isolation)."""
        svc = self.services.get(service_id)
        return svc if svc and svc.workspace_id == workspace_id else None

    def services_of(self, workspace_id: str) -> list[ev.ServiceSaved]:
        return sorted((s for s in self.services.values() if s.workspace_id == workspace_id), key=lambda s: s.created_at)

    def rate_overrides(self, service_id: str) -> tuple[int | None, int | None]:
        """The service's own base limits ``(per_minute, per_day)``; None where not set."""
        svc = self.services.get(service_id)
        return (svc.rate_per_minute, svc.rate_per_day) if svc else (None, None)

    def keys_of(self, service_id: str) -> list[ev.ApiKeySaved]:
        return sorted((k for k in self.api_keys.values() if k.service_id == service_id), key=lambda k: k.created_at)

    def domains_of(self, service_id: str) -> list[ev.DomainSaved]:
        return sorted((d for d in self.domains.values() if d.service_id == service_id), key=lambda d: d.created_at)

    def verified_domain(self, service_id: str, domain: str) -> ev.DomainSaved | None:
        domain = domain.lower()
        for d in self.domains.values():
            if d.service_id == service_id and d.verified and d.domain == domain:
                return d
        return None

    def receiving_domain(self, domain: str) -> ev.DomainSaved | None:
        """The domain record that receives mail for ``domain`` (docs/receiving.md): the one
        with ``receiving`` on whose owner proved it holds the domain (verified: its SPF and
        DKIM records are in DNS) and whose service still exists; the oldest if two such
        services claimed it at once (enabling receiving refuses a domain another service
        receives for, but two processes may both have said yes before either saw the other).
        Anyone can add any domain name to a service: an unverified claim receives nothing
        and stands in nobody's way."""
        claims = [d for d in self.receiving_claims(domain) if d.verified]
        return min(claims, key=lambda d: (d.created_at, d.domain_id)) if claims else None

    def receiving_claims(self, domain: str) -> list[ev.DomainSaved]:
        """Every domain record with ``receiving`` on for ``domain`` whose service still exists,
        verified or not (``receiving_domain`` takes the verified ones)."""
        domain = domain.lower()
        return [d for d in self.domains.values() if d.receiving and d.domain == domain and d.service_id in self.services]

    def sandbox_of(self, service_id: str) -> list[ev.SandboxRecipientSaved]:
        return sorted((r for r in self.sandbox.values() if r.service_id == service_id), key=lambda r: r.created_at)

    def is_verified_sandbox_recipient(self, service_id: str, email: str) -> bool:
        email = email.lower()
        return any(r.service_id == service_id and r.verified and r.email == email for r in self.sandbox.values())

    def suppression(self, service_id: str, email: str) -> ev.SuppressionSaved | None:
        return self.suppressions.get((service_id, email.lower()))

    def suppressions_of(self, service_id: str) -> list[ev.SuppressionSaved]:
        return sorted((s for (sid, _), s in self.suppressions.items() if sid == service_id),
                      key=lambda s: (s.created_at, s.email), reverse=True)

    def user(self, workspace_id: str, user_id: str) -> ev.UserSaved | None:
        """The user if it exists and belongs to ``workspace_id`` (tenant isolation)."""
        u = self.users.get(user_id)
        return u if u and u.workspace_id == workspace_id else None

    def users_of(self, workspace_id: str) -> list[ev.UserSaved]:
        return sorted((u for u in self.users.values() if u.workspace_id == workspace_id), key=lambda u: u.email)

    def users_by_email(self, email: str) -> list[ev.UserSaved]:
        """Every workspace's user of ``email`` (lower-cased), oldest first."""
        email = email.lower()
        return sorted((u for u in self.users.values() if u.email == email), key=lambda u: u.created_at)

    def sessions_of(self, workspace_id: str, user_id: str | None) -> list[ev.SessionSaved]:
        """The sessions of a user (``user_id`` None: the admin token's), newest first;
        expired ones included (the caller filters by time)."""
        return sorted((s for s in self.sessions.values() if s.workspace_id == workspace_id and s.user_id == user_id),
                      key=lambda s: s.created_at, reverse=True)

    def user_token_by_hash(self, token_hash: str) -> ev.UserTokenSaved | None:
        tid = self._by_user_token_hash.get(token_hash)
        return self.user_tokens.get(tid) if tid else None

    def user_tokens_of(self, user_id: str) -> list[ev.UserTokenSaved]:
        return sorted((t for t in self.user_tokens.values() if t.user_id == user_id), key=lambda t: t.created_at)

    def webhooks_of(self, service_id: str) -> list[ev.WebhookSaved]:
        return sorted((w for w in self.webhooks.values() if w.service_id == service_id), key=lambda w: w.created_at)

    def receiving_rules_of(self, service_id: str) -> list[ev.ReceivingRuleSaved]:
        return sorted((r for r in self.receiving_rules.values() if r.service_id == service_id),
                      key=lambda r: (r.created_at, r.rule_id))

    def templates_of(self, service_id: str) -> list[ev.TemplateSaved]:
        """The service's templates, newest first (Resend's list order)."""
        return sorted((t for t in self.templates.values() if t.service_id == service_id),
                      key=lambda t: (t.created_at, t.template_id), reverse=True)

    def template(self, service_id: str, id_or_alias: str) -> ev.TemplateSaved | None:
        """The service's template by id, else by alias (tenant isolation: another service's is
        None). Aliases are checked unique when set, but two processes may each accept the same
        new alias at one moment: the older template then keeps it, on every process alike."""
        found = self.templates.get(id_or_alias)
        if found is not None and found.service_id == service_id:
            return found
        named = [t for t in self.templates.values() if t.service_id == service_id and t.alias == id_or_alias]
        return min(named, key=lambda t: (t.created_at, t.template_id)) if named else None

    def versions_of_template(self, template_id: str) -> list[ev.TemplateVersionSaved]:
        """A template's published versions, newest first."""
        return sorted((v for v in self.template_versions.values() if v.template_id == template_id),
                      key=lambda v: v.number, reverse=True)
