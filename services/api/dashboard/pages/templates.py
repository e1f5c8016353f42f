"""A service's stored templates (docs/templates.md): the list and create; the editor (name,
alias, from, subject, reply-to, HTML, text, variables) with a preview rendered with sample
values in the sandboxed frame the dev inbox uses; "send test" of the draft to a verified
sandbox recipient; publish; the version history (restore a version into the draft); delete.
The operations are services/api/manage/templates.py's, as for the API."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.api.dashboard.pages.owned import owned
from services.api.dashboard.web import (BAD_INPUT, CSP_WITH_MAIL, Caller, caller, form, or_error_page, page, problem,
                                        redirect, service_of)
from services.api.manage import templates as manage
from services.api.manage.template_inputs import TemplateCreate, TemplateFields
from services.api.refusal import Refusal
from shared import events as ev

router = APIRouter(include_in_schema=False)


def _list(request: Request, c: Caller, svc: ev.ServiceSaved, status: int = 200, error: str | None = None) -> HTMLResponse:
    items = [manage.list_item(t) for t in c.rt.control.state.templates_of(svc.service_id)]
    return page(request, "templates.html", status=status, c=c, svc=svc, templates=items, error=error, tab="templates")


@router.get("/services/{service_id}/templates")
async def templates_page(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    return _list(request, c, service_of(c, service_id))


@router.post("/services/{service_id}/templates")
async def template_create(request: Request, service_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    svc = service_of(c, service_id)
    try:
        body = TemplateCreate.model_validate({"name": data.get("name", "").strip(), "html": data.get("html", "")})
    except BAD_INPUT as exc:
        return _list(request, c, svc, 400, problem(exc))
    created = await manage.create_template(c.rt, svc, body)
    if isinstance(created, Refusal):
        return _list(request, c, svc, 400, problem(created))
    return redirect(f"/services/{service_id}/templates/{created['id']}")


def variables_text(variables: list[dict[str, Any]]) -> str:
    """The editor's variables box: one ``KEY type [fallback]`` a line."""
    return "\n".join(" ".join([v["key"], v["type"], *([str(v["fallback_value"])] if v["fallback_value"] is not None else [])])
                     for v in variables)


def parse_variables(text: str) -> list[dict[str, Any]]:
    """``KEY type [fallback…]`` lines into Resend's variable objects (a number fallback read as
    a number; anything unreadable left for the input model to refuse, naming the line)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=2)
        if not parts:
            continue
        kind = parts[1] if len(parts) > 1 else "string"
        fallback: Any = parts[2] if len(parts) > 2 else None
        if kind == "number" and fallback is not None:
            try:
                fallback = float(fallback) if any(ch in fallback for ch in ".eE") else int(fallback)
            except ValueError:
                pass  # refused by the model: "must be a number"
        out.append({"key": parts[0], "type": kind, "fallback_value": fallback})
    return out


def parse_samples(text: str) -> dict[str, str]:
    """``KEY=value`` lines (the preview's sample values)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def fields_of(data: dict[str, str]) -> TemplateFields:
    """The editor's form as the API's update body (an empty box clears its field)."""
    reply_to = [a.strip() for a in data.get("reply_to", "").split(",") if a.strip()]
    return TemplateFields.model_validate({
        "name": data.get("name", "").strip(), "alias": data.get("alias", "").strip() or None,
        "from": data.get("from", "").strip() or None, "subject": data.get("subject") or None,
        "reply_to": reply_to or None, "html": data.get("html", ""), "text": data.get("text") or None,
        "variables": parse_variables(data.get("variables", ""))})


async def _editor(request: Request, c: Caller, service_id: str, template_id: str, status: int = 200,
                  error: str | None = None, notice: str | None = None, samples: str = "") -> HTMLResponse:
    """The editor with the saved draft, its preview with ``samples`` and the versions."""
    svc = service_of(c, service_id)
    t = owned(c.rt.control.state.templates, template_id, svc, "template")
    rendered = manage.preview(t.draft, parse_samples(samples))
    recipients = [r.email for r in c.rt.control.state.sandbox_of(svc.service_id) if r.verified]
    return page(request, "template.html", status=status, csp=CSP_WITH_MAIL, c=c, svc=svc, t=manage.view(c.rt, t),
                variables=variables_text(manage.view(c.rt, t)["variables"]), samples=samples,
                preview=None if isinstance(rendered, Refusal) else rendered,
                preview_error=rendered.text if isinstance(rendered, Refusal) else None,
                recipients=recipients, error=error, notice=notice, tab="templates")


@router.get("/services/{service_id}/templates/{template_id}")
async def template_page(request: Request, service_id: str, template_id: str, samples: str = Query("", max_length=20_000),
                        c: Caller = Depends(caller)) -> Response:
    """The editor; ``samples`` (``KEY=value`` lines) fill the preview."""
    return await _editor(request, c, service_id, template_id, samples=samples)


def _template(c: Caller, service_id: str, template_id: str) -> tuple[ev.ServiceSaved, ev.TemplateSaved]:
    svc = service_of(c, service_id)
    return svc, owned(c.rt.control.state.templates, template_id, svc, "template")


@router.post("/services/{service_id}/templates/{template_id}")
async def template_save(request: Request, service_id: str, template_id: str, c: Caller = Depends(caller)) -> Response:
    """Save the draft (sends keep the published version) and show its preview."""
    data = await form(request, c)
    svc, t = _template(c, service_id, template_id)
    try:
        body = fields_of(data)
    except BAD_INPUT as exc:
        return await _editor(request, c, service_id, template_id, 400, error=problem(exc), samples=data.get("samples", ""))
    saved = await manage.update_template(c.rt, svc, t, body)
    if isinstance(saved, Refusal):
        return await _editor(request, c, service_id, template_id, 400, error=problem(saved),
                             samples=data.get("samples", ""))
    return await _editor(request, c, service_id, template_id, notice="Draft saved.", samples=data.get("samples", ""))


@router.post("/services/{service_id}/templates/{template_id}/publish")
async def template_publish(request: Request, service_id: str, template_id: str, c: Caller = Depends(caller)) -> Response:
    data = await form(request, c)
    _, t = _template(c, service_id, template_id)
    done = await manage.publish_template(c.rt, t)
    if isinstance(done, Refusal):
        return await _editor(request, c, service_id, template_id, done.status, error=problem(done),
                             samples=data.get("samples", ""))
    return await _editor(request, c, service_id, template_id, notice="Published: sends use this version now.",
                         samples=data.get("samples", ""))


@router.post("/services/{service_id}/templates/{template_id}/send-test")
async def template_send_test(request: Request, service_id: str, template_id: str, c: Caller = Depends(caller)) -> Response:
    """Send the draft, rendered with the sample values, to a verified sandbox recipient."""
    data = await form(request, c)
    svc, t = _template(c, service_id, template_id)
    samples = data.get("samples", "")
    sent = await manage.send_test(c.rt, svc, t, data.get("to", ""), parse_samples(samples))
    if isinstance(sent, Refusal):
        return await _editor(request, c, service_id, template_id, sent.status, error=problem(sent), samples=samples)
    return await _editor(request, c, service_id, template_id, notice=f"Test sent to {data.get('to')} (email {sent['id']}).",
                         samples=samples)


@router.post("/services/{service_id}/templates/{template_id}/versions/{version_id}/restore")
async def template_restore(request: Request, service_id: str, template_id: str, version_id: str,
                           c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    _, t = _template(c, service_id, template_id)
    or_error_page(await manage.restore_version(c.rt, t, version_id))
    return await _editor(request, c, service_id, template_id, notice="Version copied into the draft; publish to send it.")


@router.post("/services/{service_id}/templates/{template_id}/delete")
async def template_delete(request: Request, service_id: str, template_id: str, c: Caller = Depends(caller)) -> Response:
    await form(request, c)
    _, t = _template(c, service_id, template_id)
    or_error_page(await manage.delete_template(c.rt, t))
    return redirect(f"/services/{service_id}/templates")
