"""Stored templates of a service (docs/templates.md): create, change the draft,
publish (the draft becomes a new published version, the one sends use; earlier versions
stay listed), duplicate, delete; and the published content a send renders.

Templates are control records (``TemplateSaved``, ``TemplateVersionSaved``), so every API
process sees a change at once. A template is found by its id or its alias, within its
service only. The views are Resend's shapes (its SDKs read them), plus ``versions``."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.api import template_render
from services.api.accept import accept
from services.api.context import ApiContext
from services.api.manage import changed, deleted
from services.api.manage.template_inputs import TemplateCreate, TemplateFields
from services.api.refusal import Refusal
from services.api.schemas import SendEmail
from services.api.validation_errors import first_error
from shared import events as ev

MAX_LIST = 100
CONTENT_FIELDS = {"from_": "sender", "subject": "subject", "reply_to": "reply_to", "html": "html", "text": "text",
                  "variables": "variables"}  # request field → TemplateContent field


def find_template(rt: ApiContext, svc: ev.ServiceSaved, id_or_alias: str) -> ev.TemplateSaved | Refusal:
    found = rt.control.state.template(svc.service_id, id_or_alias)
    return found if found is not None else Refusal(404, f"template {id_or_alias} not found", code="not_found")


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


def template_filter(rt: ApiContext, svc: ev.ServiceSaved, id_or_alias: str | None) -> str | None:
    """The template id a stats or message-log filter names: a live template's by id or alias,
    else the text as given (a deleted template's messages still carry its id); None: no filter."""
    if not id_or_alias:
        return None
    found = rt.control.state.template(svc.service_id, id_or_alias)
    return found.template_id if found is not None else id_or_alias


def list_item(t: ev.TemplateSaved) -> dict[str, Any]:
    """What Resend's list answers per template."""
    return {"id": t.template_id, "object": "template", "name": t.name, "alias": t.alias,
            "status": "published" if t.published_version_id else "draft", "published_at": _iso(t.published_at),
            "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at)}


def _variables(content: ev.TemplateContent, t: ev.TemplateSaved) -> list[dict[str, Any]]:
    return [{"key": v.key, "type": v.type, "fallback_value": v.fallback_value, "created_at": _iso(t.created_at),
             "updated_at": _iso(t.updated_at)} for v in content.variables]


def view(rt: ApiContext, t: ev.TemplateSaved) -> dict[str, Any]:
    """The template with its draft content (what edits change), whether the draft differs
    from the published version, and the published versions, newest first."""
    versions = rt.control.state.versions_of_template(t.template_id)
    current = rt.control.state.template_versions.get(t.published_version_id or "")
    d = t.draft
    return {**list_item(t), "from": d.sender, "subject": d.subject, "reply_to": d.reply_to or None, "html": d.html,
            "text": d.text, "variables": _variables(d, t), "current_version_id": t.published_version_id,
            "has_unpublished_versions": current is None or current.content != d,
            "versions": [{"id": v.version_id, "number": v.number, "published_at": _iso(v.created_at),
                          "current": v.version_id == t.published_version_id} for v in versions]}


def version_view(v: ev.TemplateVersionSaved) -> dict[str, Any]:
    c = v.content
    return {"id": v.version_id, "template_id": v.template_id, "number": v.number, "published_at": _iso(v.created_at),
            "from": c.sender, "subject": c.subject, "reply_to": c.reply_to or None, "html": c.html, "text": c.text,
            "variables": [x.model_dump() for x in c.variables]}


def list_templates(rt: ApiContext, svc: ev.ServiceSaved, limit: int, after: str | None, before: str | None
                   ) -> dict[str, Any] | Refusal:
    """Newest first, Resend's cursor pagination: ``after``/``before`` a template id."""
    items = rt.control.state.templates_of(svc.service_id)
    ids = [t.template_id for t in items]
    for cursor in (after, before):
        if cursor is not None and cursor not in ids:
            return Refusal(400, f"template {cursor} is not in the list", field="after" if cursor == after else "before")
    if after is not None:
        items = items[ids.index(after) + 1:]
        page, more = items[:limit], len(items) > limit
    elif before is not None:
        items = items[:ids.index(before)]
        page, more = items[-limit:], len(items) > limit
    else:
        page, more = items[:limit], len(items) > limit
    return {"object": "list", "data": [list_item(t) for t in page], "has_more": more}


def _content(base: ev.TemplateContent, fields: dict[str, Any]) -> ev.TemplateContent:
    """``base`` with the request's content fields (a null clears an optional one)."""
    update: dict[str, Any] = {}
    for given, name in CONTENT_FIELDS.items():
        if given not in fields:
            continue
        value = fields[given]
        if name == "variables":
            value = [ev.TemplateVariable(**v.model_dump()) for v in value or ()]
        elif name == "reply_to":
            value = value or []
        elif name == "html":
            value = value or ""
        update[name] = value
    return base.model_copy(update=update)


def _alias_taken(rt: ApiContext, svc: ev.ServiceSaved, alias: str | None, own_id: str | None) -> Refusal | None:
    other = rt.control.state.template(svc.service_id, alias) if alias else None
    if other is not None and other.template_id != own_id:
        return Refusal(409, f"another template of this service is called {alias}", field="alias")
    return None


def _ack(template_id: str) -> dict[str, Any]:
    return {"id": template_id, "object": "template"}


async def create_template(rt: ApiContext, svc: ev.ServiceSaved, body: TemplateCreate) -> dict[str, Any] | Refusal:
    """A new template, unpublished (``status: draft``); 409 when the alias is taken."""
    if refused := _alias_taken(rt, svc, body.alias, None):
        return refused
    now = ev.utcnow()
    t = ev.TemplateSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, template_id=ev.new_id(),
                         name=body.name, alias=body.alias, draft=_content(ev.TemplateContent(), body.given()),
                         created_at=now, updated_at=now)
    await rt.control.save(t)
    return _ack(t.template_id)


async def update_template(rt: ApiContext, svc: ev.ServiceSaved, t: ev.TemplateSaved, body: TemplateFields
                          ) -> dict[str, Any] | Refusal:
    """Change the draft (and name, alias): sends keep using the published version until
    the next publish."""
    given = body.given()
    if given.get("name", "") is None:
        return Refusal(400, "must not be null", field="name")
    if "alias" in given and (refused := _alias_taken(rt, svc, given["alias"], t.template_id)):
        return refused
    fields: dict[str, Any] = {k: given[k] for k in ("name", "alias") if k in given}
    draft = _content(t.draft, given)
    if draft != t.draft:
        fields["draft"] = draft
    if not fields:
        return _ack(t.template_id)
    updated = await changed(rt, t, **fields, updated_at=ev.utcnow())
    return updated if isinstance(updated, Refusal) else _ack(t.template_id)


def check_publishable(content: ev.TemplateContent) -> Refusal | None:
    """A version sends can use: some HTML, and every ``{{{KEY}}}`` it uses declared (a 422
    naming the first undeclared one; the draft may hold anything meanwhile)."""
    if not content.html.strip():
        return Refusal(422, "a template needs HTML before it is published", field="html")
    declared = {v.key for v in content.variables}
    for field in ("subject", "html", "text"):
        used = template_render.placeholders(getattr(content, field) or "")
        if missing := sorted(used - declared):
            return Refusal(422, f"{{{{{{{missing[0]}}}}}}} is used but not declared in variables", field=field)
    return None


async def publish_template(rt: ApiContext, t: ev.TemplateSaved) -> dict[str, Any] | Refusal:
    """The draft becomes a new published version, the one sends render from now on."""
    if refused := check_publishable(t.draft):
        return refused
    number = 1 + max((v.number for v in rt.control.state.versions_of_template(t.template_id)), default=0)
    now = ev.utcnow()
    version = ev.TemplateVersionSaved(workspace_id=t.workspace_id, service_id=t.service_id, template_id=t.template_id,
                                      version_id=ev.new_id(), number=number, content=t.draft, created_at=now)
    await rt.control.save(version)
    updated = await changed(rt, t, published_version_id=version.version_id, published_at=now, updated_at=now)
    return updated if isinstance(updated, Refusal) else _ack(t.template_id)


def find_version(rt: ApiContext, t: ev.TemplateSaved, version_id: str) -> ev.TemplateVersionSaved | Refusal:
    version = rt.control.state.template_versions.get(version_id)
    if version is None or version.template_id != t.template_id:
        return Refusal(404, f"version {version_id} not found")
    return version


async def restore_version(rt: ApiContext, t: ev.TemplateSaved, version_id: str) -> dict[str, Any] | Refusal:
    """Copy a published version back into the draft (publish it again to send it)."""
    version = find_version(rt, t, version_id)
    if isinstance(version, Refusal):
        return version
    updated = await changed(rt, t, draft=version.content, updated_at=ev.utcnow())
    return updated if isinstance(updated, Refusal) else _ack(t.template_id)


async def duplicate_template(rt: ApiContext, svc: ev.ServiceSaved, t: ev.TemplateSaved) -> dict[str, Any]:
    """A new unpublished template with the draft of ``t`` (no alias: aliases are unique)."""
    now = ev.utcnow()
    copy = ev.TemplateSaved(workspace_id=svc.workspace_id, service_id=svc.service_id, template_id=ev.new_id(),
                            name=f"{t.name} (copy)"[:200], draft=t.draft, created_at=now, updated_at=now)
    await rt.control.save(copy)
    return _ack(copy.template_id)


async def delete_template(rt: ApiContext, t: ev.TemplateSaved) -> dict[str, Any] | Refusal:
    """Delete the template and its versions; messages already accepted are not affected."""
    if refused := await deleted(rt, t):
        return refused
    for version in rt.control.state.versions_of_template(t.template_id):
        await deleted(rt, version)  # a refusal here: already deleted by a concurrent request
    return {"object": "template", "id": t.template_id, "deleted": True}


def sample_values(content: ev.TemplateContent, samples: dict[str, str]) -> dict[str, Any]:
    """The dashboard's sample values (text typed by a person) for ``content``'s declared
    variables: numbers read as numbers; empty or undeclared samples are left out."""
    kinds = {v.key: v.type for v in content.variables}
    out: dict[str, Any] = {}
    for key, text in samples.items():
        if key not in kinds or text == "":
            continue
        if kinds[key] == "number":
            try:
                out[key] = float(text) if any(ch in text for ch in ".eE") else int(text)
            except ValueError:
                out[key] = text  # rendered as the type error a send would get
        else:
            out[key] = text
    return out


def preview(content: ev.TemplateContent, samples: dict[str, str]) -> template_render.Rendered | Refusal:
    """``content`` rendered with sample values, or the 422 a send with them would get."""
    try:
        return template_render.render(content, sample_values(content, samples))
    except template_render.TemplateError as exc:
        return Refusal(422, exc.message, field=exc.field)


async def send_test(rt: ApiContext, svc: ev.ServiceSaved, t: ev.TemplateSaved, recipient: str,
                    samples: dict[str, str]) -> dict[str, Any] | Refusal:
    """Send the *draft*, rendered with sample values, to one of the service's verified sandbox
    recipients through the accept core (so before publishing, a person sees the real mail).
    The subject is marked ``[Test]``; the sandbox rules apply as to any send."""
    if not rt.control.state.is_verified_sandbox_recipient(svc.service_id, recipient):
        return Refusal(400, f"{recipient} is not a verified sandbox recipient of this service", field="to")
    rendered = preview(t.draft, samples)
    if isinstance(rendered, Refusal):
        return rendered
    fields = {"from": t.draft.sender or rt.settings.sandbox_from, "to": [recipient], "html": rendered.html,
              "subject": f"[Test] {rendered.subject or t.name}", "tags": ["template-test"],
              **({"text": rendered.text} if rendered.text is not None else {})}
    try:
        body = SendEmail.model_validate(fields)
    except ValidationError as exc:
        return Refusal(422, "the rendered " + first_error(exc.errors()), field="template")
    outcome = await accept(rt, svc, body, "emails")
    return outcome if isinstance(outcome, Refusal) else outcome.response
