"""A send with ``template: {id, variables}`` (docs/templates.md): the first step
of the accept core (services/api/sending.py ``prepare``), the same on every door.

The template's *published* version is rendered here, at accept, so the request on the log
carries the rendered message: a later edit or publish never changes an accepted send. The
send's own ``from``, ``subject`` and ``reply_to`` override the template's; ``html``/``text``
beside a template are refused. The rendered message then passes every rule of a plain
send again (addresses, header line breaks a variable may bring into the subject, size).
Every refusal here is a 422 naming the field."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.api.refusal import Refusal
from services.api.schemas import SendEmail
from services.api.template_render import TemplateError, render
from services.api.validation_errors import first_error
from shared import events as ev
from shared.control.state import ControlState


def published(state: ControlState, svc: ev.ServiceSaved, id_or_alias: str
              ) -> tuple[ev.TemplateSaved, ev.TemplateContent] | Refusal:
    """The template a send names and its published content; 422 when unknown or never
    published (a send never renders a draft)."""
    t = state.template(svc.service_id, id_or_alias)
    if t is None:
        return Refusal(422, f"template {id_or_alias} not found", field="template.id")
    version = state.template_versions.get(t.published_version_id or "")
    if version is None:
        return Refusal(422, f"template {id_or_alias} is not published; publish it first", field="template.id")
    return t, version.content


def apply_template(state: ControlState, svc: ev.ServiceSaved, body: SendEmail) -> tuple[SendEmail, str | None] | Refusal:
    """``(body, None)`` for a send without a template; else the rendered send and the
    template's id, or the 422 refusal."""
    ref = body.template
    if ref is None:
        return body, None
    if body.html_body is not None or body.text is not None:
        return Refusal(422, "give either a template or html/text, not both",
                       field="html" if body.html_body is not None else "text")
    found = published(state, svc, ref.id)
    if isinstance(found, Refusal):
        return found
    template, content = found
    try:
        out = render(content, ref.variables or {})
    except TemplateError as exc:
        return Refusal(422, exc.message, field=exc.field)
    fields: dict[str, Any] = body.model_dump(by_alias=True, exclude_unset=True, exclude={"template"})
    for name, value in (("from", content.sender), ("subject", out.subject), ("reply_to", content.reply_to or None)):
        if name not in fields and value is not None:
            fields[name] = value
    if "from" not in fields:
        return Refusal(422, "required: neither the send nor the template gives a sender", field="from")
    fields.update(html=out.html, **({"text": out.text} if out.text is not None else {}))
    fields.setdefault("subject", "")
    try:
        return SendEmail.model_validate(fields), template.template_id
    except ValidationError as exc:
        return Refusal(422, "the rendered " + first_error(exc.errors()), field="template")
