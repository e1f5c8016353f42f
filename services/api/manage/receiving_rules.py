"""Routing rules for received mail (docs/receiving.md; applied by
services/relay/inbound/routing.py): create, list, view, delete. Rules are control records,
so every process (the inbound listener's included) sees a rule once it is answered."""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.context import ApiContext
from services.api.manage import deleted
from services.api.refusal import Refusal
from shared import events as ev
from shared.addresses import AddressError, parse_mailbox

MAX_RULES = 100  # per service
PATTERN = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~?-]{1,64}@[a-z0-9*?.-]{1,253}\Z")


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str = Field(max_length=320, examples=["support@acme.com", "*@acme.com"],
                         description="An address glob (`*`, `?`), matched case-insensitively.")
    webhook_ids: list[str] | None = Field(None, max_length=20, description="Webhooks that get the mail (default: "
                                                                           "every webhook subscribed to email.received).")
    forward_to: list[str] = Field([], max_length=10, description="Addresses the mail is forwarded to.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        v = v.strip().lower()
        if not PATTERN.match(v):
            raise ValueError("must be an address, * and ? allowed: support@acme.com, *@acme.com")
        return v

    @field_validator("forward_to")
    @classmethod
    def _forward_to(cls, v: list[str]) -> list[str]:
        out = []
        for address in v:
            try:
                out.append(parse_mailbox(address)[1].lower())
            except AddressError as exc:
                raise ValueError(f"{address!r} is not a valid address: {exc}") from None
        return list(dict.fromkeys(out))


def rule_view(r: ev.ReceivingRuleSaved) -> dict[str, Any]:
    return {"id": r.rule_id, "pattern": r.pattern, "webhook_ids": r.webhook_ids, "forward_to": r.forward_to,
            "created_at": r.created_at.isoformat()}


def list_rules(rt: ApiContext, svc: ev.ServiceSaved) -> list[dict[str, Any]]:
    return [rule_view(r) for r in rt.control.state.receiving_rules_of(svc.service_id)]


def find_rule(rt: ApiContext, svc: ev.ServiceSaved, rule_id: str) -> ev.ReceivingRuleSaved | Refusal:
    r = rt.control.state.receiving_rules.get(rule_id)
    if r is None or r.service_id != svc.service_id:
        return Refusal(404, f"receiving rule {rule_id} not found")
    return r


async def create_rule(rt: ApiContext, svc: ev.ServiceSaved, body: RuleCreate) -> dict[str, Any] | Refusal:
    """400 for a webhook that is not the service's, a forward to one of the service's own
    receiving domains (a loop), or forwarding before a receiving domain is verified (forwards
    are DKIM-signed by it); 409 past ``MAX_RULES``."""
    state = rt.control.state
    if len(state.receiving_rules_of(svc.service_id)) >= MAX_RULES:
        return Refusal(409, f"a service has at most {MAX_RULES} receiving rules")
    own = {w.webhook_id for w in state.webhooks_of(svc.service_id)}
    unknown = [w for w in body.webhook_ids or [] if w not in own]
    if unknown:
        return Refusal(400, f"{unknown[0]} is not a webhook of this service", field="webhook_ids")
    receiving = [d for d in state.domains_of(svc.service_id) if d.receiving]
    looping = [a for a in body.forward_to if any(a.endswith("@" + d.domain) for d in receiving)]
    if looping:
        return Refusal(400, f"{looping[0]} is at a receiving domain of this service (a loop)", field="forward_to")
    if body.forward_to and not any(d.verified for d in receiving):
        return Refusal(400, "forwarding needs a verified receiving domain: forwards are DKIM-signed by it",
                       field="forward_to")
    rule = ev.ReceivingRuleSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, rule_id=ev.new_id(),
                                 pattern=body.pattern, webhook_ids=body.webhook_ids, forward_to=body.forward_to,
                                 created_at=ev.utcnow())
    await rt.control.save(rule)
    return rule_view(rule)


async def delete_rule(rt: ApiContext, rule: ev.ReceivingRuleSaved) -> Refusal | None:
    return await deleted(rt, rule)
