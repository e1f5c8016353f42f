"""Stored templates (docs/templates.md), two doors to services/api/manage/templates.py:
Resend's ``/templates`` paths with a full-access API key (its SDKs call them unchanged), and
``/api/email/services/{id}/templates`` with the workspace admin token. A template is named
by its id or its alias. Each door is its own router, registered before any catch-all."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from services.api.auth import ServiceCaller, full_access_key, owned_service, runtime
from services.api.context import ApiContext
from services.api.errors import unless_refused
from services.api.manage import templates as manage
from services.api.manage.template_inputs import TemplateCreate, TemplateFields
from shared import events as ev

resend_router = APIRouter(prefix="/templates", tags=["templates"])
admin_router = APIRouter(prefix="/api/email/services/{service_id}/templates", tags=["templates"])
routers = (resend_router, admin_router)


async def key_service(caller: ServiceCaller = Depends(full_access_key)) -> ev.ServiceSaved:
    return caller.service


def _add_routes(router: APIRouter, owner: Any) -> None:
    """The same operations on ``router``, the service given by the ``owner`` dependency.

    Long because: one short handler per operation, declared together so that both doors
    always offer the same set."""

    async def owned(template_id: str, svc: ev.ServiceSaved = Depends(owner),
                    rt: ApiContext = Depends(runtime)) -> ev.TemplateSaved:
        return unless_refused(manage.find_template(rt, svc, template_id))

    @router.post("", status_code=201)
    async def create_template(body: TemplateCreate, svc: ev.ServiceSaved = Depends(owner),
                              rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """A new template, unpublished: `{id, object}`."""
        return unless_refused(await manage.create_template(rt, svc, body))

    @router.get("")
    async def list_templates(limit: int = Query(20, ge=1, le=manage.MAX_LIST), after: str | None = Query(None),
                             before: str | None = Query(None), svc: ev.ServiceSaved = Depends(owner),
                             rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """Newest first; `after`/`before` a template id, `has_more`."""
        return unless_refused(manage.list_templates(rt, svc, limit, after, before))

    @router.get("/{template_id}")
    async def get_template(t: ev.TemplateSaved = Depends(owned), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """The template with its draft, status and published versions."""
        return manage.view(rt, t)

    @router.patch("/{template_id}")
    async def update_template(body: TemplateFields, t: ev.TemplateSaved = Depends(owned),
                              svc: ev.ServiceSaved = Depends(owner), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """Change the draft; sends keep the published version until the next publish."""
        return unless_refused(await manage.update_template(rt, svc, t, body))

    @router.delete("/{template_id}")
    async def delete_template(t: ev.TemplateSaved = Depends(owned), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        return unless_refused(await manage.delete_template(rt, t))

    @router.post("/{template_id}/publish")
    async def publish_template(t: ev.TemplateSaved = Depends(owned), rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """The draft becomes the published version sends use (422 when a used variable is undeclared)."""
        return unless_refused(await manage.publish_template(rt, t))

    @router.post("/{template_id}/duplicate")
    async def duplicate_template(t: ev.TemplateSaved = Depends(owned), svc: ev.ServiceSaved = Depends(owner),
                                 rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """A new unpublished template with the same draft: `{id, object}`."""
        return await manage.duplicate_template(rt, svc, t)

    @router.get("/{template_id}/versions/{version_id}")
    async def get_version(version_id: str, t: ev.TemplateSaved = Depends(owned),
                          rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """One published version's content."""
        return manage.version_view(unless_refused(manage.find_version(rt, t, version_id)))

    @router.post("/{template_id}/versions/{version_id}/restore")
    async def restore_version(version_id: str, t: ev.TemplateSaved = Depends(owned),
                              rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
        """Copy a published version back into the draft (publish to send it again)."""
        return unless_refused(await manage.restore_version(rt, t, version_id))


_add_routes(resend_router, key_service)
_add_routes(admin_router, owned_service)
