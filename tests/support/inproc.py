"""Postline's API in the test's own event loop (real embedded log; no HTTP socket)."""
from __future__ import annotations

import contextlib

import httpx

from services.api.app import asgi_app
from shared import events as ev
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.postline import ADMIN_TOKEN


@contextlib.asynccontextmanager
async def api_runtime(data_dir, with_store: bool = False, **overrides):
    settings = Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, secret_key="test-master-key", **overrides)
    rt = Runtime(settings)
    await rt.start(with_store=with_store)
    await rt.ensure_default_workspace()
    transport = httpx.ASGITransport(app=asgi_app(rt), raise_app_exceptions=False)  # as the server runs it
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        yield rt, AdminClient(client, ADMIN_TOKEN)
    await rt.close()


class AdminClient:
    def __init__(self, http: httpx.AsyncClient, token: str):
        self.http, self.token = http, token

    def as_token(self, token: str) -> "AdminClient":
        return AdminClient(self.http, token)

    async def __call__(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kw)

    async def service(self, name: str = "app") -> str:
        r = await self("POST", "/api/email/services", json={"name": name})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def key(self, sid: str) -> str:
        r = await self("POST", f"/api/email/services/{sid}/api-keys", json={"name": "k"})
        assert r.status_code == 201, r.text
        return r.json()["key"]


async def ready_service(rt, admin) -> tuple[str, str]:
    """A sandbox service with a key and ``ann@example.com`` verified."""
    sid = await admin.service()
    key = await admin.key(sid)
    await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "ann@example.com"})
    rec = rt.control.state.sandbox_of(sid)[0]
    await rt.control.save(rec.model_copy(update={"verified": True, "token_hash": None, "id": ev.new_id()}))
    return sid, key


async def receiving_domain(rt, admin, sid: str, name: str) -> str:
    """The id of ``name`` added to ``sid``, verified and receiving. Verified by a change on the
    control plane, as a successful DNS check writes it (the check itself is tested with the
    DNS server in tests/services/api/), since only a verified domain receives."""
    did = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": name})).json()["id"]
    await rt.control.change(rt.control.state.domains[did], verified=True)
    r = await admin("PATCH", f"/api/email/services/{sid}/domains/{did}", json={"receiving": True})
    assert r.status_code == 200, r.text
    return did


async def add_user(rt, workspace_id: str, email: str, role: str, password: str = "correct horse battery staple"):
    """An active dashboard user with ``password`` (as if invited and accepted)."""
    from services.api.manage import credentials, users

    rec = ev.UserSaved(workspace_id=workspace_id, user_id=users.user_id_for(workspace_id, email), email=email,
                       role=role, status="active", password_hash=await credentials.hash_password(password),
                       created_at=ev.utcnow())
    await rt.control.save(rec)
    return rec
