"""Credentials → tenant. Every lookup afterwards is scoped by what is returned here.

401: missing or invalid credential. 403: valid, but the service is disabled, or the key
belongs to another service than the one in the path. Other tenants' ids are 404.

Failed credentials are throttled per source address and account (services/api/throttle.py):
a blocked caller gets 429 ``too_many_failed_attempts`` with Retry-After (a right API key or
personal token still works, the admin token is refused before it is checked: ``checked``).

Each credential check first catches up with the control log (``caught_up``): a request reads
every management change answered before it arrived, on whichever process made it (docs/architecture.md);
503 with Retry-After when this process cannot within POSTLINE_CONTROL_CATCH_UP_TIMEOUT."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.api import access, actors
from services.api.context import ApiContext
from services.api.errors import http_error
from services.api.manage import user_tokens
from services.api.refusal import Refusal
from services.api.throttle import Door, account_of, source_of
from shared.control.errors import ControlBehind
from shared.control.state import ControlState
from shared.crypto import API_KEY_PREFIX, hash_secret
from shared.events import ApiKeySaved, ServiceSaved, WorkspaceSaved
from shared.log.port import LogError

log = logging.getLogger(__name__)

MISSING = "missing_api_key"  # Resend's name for a request without a credential (either kind)
RESTRICTED = "restricted_api_key"  # Resend's name for a sending-only key on a management path
THROTTLED = "too_many_failed_attempts"  # 429: this address (or account) failed too often; Retry-After says how long


@dataclass(frozen=True)
class ServiceCaller:
    service: ServiceSaved
    key: ApiKeySaved


# Declared as OpenAPI security schemes (the docs' Authorize button); they only read the
# headers (auto_error=False) and the functions below give the errors.
ADMIN_TOKEN = HTTPBearer(scheme_name="AdminToken", auto_error=False,
                         description="Workspace admin token (`pl_adm_…`), or a user's personal token (`pl_usr_…`, "
                                     "acting with that user's role), for the management API and the dev inbox.")
API_KEY = APIKeyHeader(name="Api-Key", scheme_name="ApiKey", auto_error=False,
                       description="Service API key (`rs_eml_…`) for the send API.")
API_KEY_BEARER = HTTPBearer(scheme_name="ApiKeyBearer", auto_error=False,
                            description="Service API key as `Authorization: Bearer rs_eml_…` (either this or `Api-Key`).")


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials.strip() if credentials else None


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` value, read as FastAPI's
    ``HTTPBearer`` and ``_bearer`` above read it (the send fast path's copy); else None."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


# The dependencies below are ``async def`` (also those that never await): FastAPI runs a
# plain ``def`` dependency in a worker thread, two thread hand-offs per dependency per request.
async def runtime(request: Request) -> ApiContext:
    return request.app.state.runtime


async def catch_up(rt: ApiContext) -> Refusal | None:
    """Read-your-writes before a request reads control state: this process has applied the
    control log up to its end as of now (microseconds on the embedded log when nothing
    changed). A 503 refusal (retry after 1 s) when it cannot."""
    try:
        await rt.control.catch_up()
    except ControlBehind as exc:
        return Refusal(503, str(exc), retry_after=1, cause=exc)
    return None


async def caught_up(rt: ApiContext) -> None:
    """``catch_up`` for a route or page: raises its refusal as the HTTP error."""
    if refused := await catch_up(rt):
        raise http_error(refused)


def client_address(request: Request) -> str:
    """The address a request's failures are counted under (throttle.source_of)."""
    return source_of(request.client.host if request.client else None)


def throttled(rt: ApiContext, address: str, account: str) -> Refusal | None:
    """429 with Retry-After when ``address`` (or ``account``, for an address that failed
    recently) is blocked; checked before the credential is. ``account``: ``account_of(secret)``
    for a key or token, the user name for a person."""
    blocked = rt.throttle.check(address, account)
    if blocked is None:
        return None
    return Refusal(429, blocked.message, retry_after=blocked.retry_after, code=THROTTLED)


async def count_failure(rt: ApiContext, door: Door, address: str, account: str) -> None:
    """Count a wrong credential for ``account`` (as in ``throttled``). When the log cannot
    take the count, the caller still gets its 401 (and the operator a line): the log being
    down stops everything else anyway."""
    try:
        await rt.throttle.failed(door, address, account)
    except LogError as exc:
        log.warning("auth throttle: a failed attempt was not counted: %s", exc)


Found = TypeVar("Found")
GENERATED = (API_KEY_PREFIX, user_tokens.PREFIX)  # credentials only Postline makes, each with 190 random bits


async def checked(request: Request, door: Door, credential: str, lookup: Callable[[ControlState, str], Found | None],
                  invalid: str) -> Found:
    """Read-your-writes, then ``lookup`` of the credential; a wrong one is counted and
    answered 401 ``invalid``, or 429 without being counted while the throttle blocks its
    address (or account). A right key Postline generated (an API key, a personal token:
    ``GENERATED``, 190 random bits) is accepted even then: it cannot be guessed, so refusing
    it would slow no attacker and would lock out every client that shares the address (a
    NAT, a proxy) with one that keeps sending a stale key. Anything else — the admin token,
    which the operator may have chosen — is refused before it is checked while blocked, as
    passwords are (services/api/dashboard/pages/auth.py): otherwise a blocked address could
    go on guessing at any rate, each wrong guess answered and none counted."""
    rt: ApiContext = request.app.state.runtime
    address = client_address(request)
    blocked = throttled(rt, address, account_of(credential))
    if blocked is not None and not credential.startswith(GENERATED):
        raise http_error(blocked)
    await caught_up(rt)
    found = lookup(rt.control.state, credential)
    if found is not None:
        return found
    if blocked is not None:
        raise http_error(blocked)
    await count_failure(rt, door, address, account_of(credential))
    raise HTTPException(401, invalid)


async def workspace(request: Request, authorization: HTTPAuthorizationCredentials | None = Security(ADMIN_TOKEN)) -> WorkspaceSaved:
    """The workspace of the credential presented as ``Authorization: Bearer``: the workspace
    admin token (role owner) or a user's personal token (``pl_usr_…``, that user's role).
    The request must be allowed to the role (services/api/access.py: reading for every role,
    any other method needs ``write``), else 403; ``request.state.actor`` names who acts."""
    token = _bearer(authorization)
    if not token:
        raise http_error(Refusal(401, "missing admin token: send Authorization: Bearer <token>", code=MISSING))
    rt: ApiContext = request.app.state.runtime
    actor = await checked(request, "admin_token", token, credential_actor, "invalid admin token")
    request.state.actor = actor
    ws = rt.control.state.workspaces[actor.workspace_id]
    actors.acting(actor, ws)
    if refused := access.refusal(actor, access.permission_of_method(request.method)):
        raise http_error(refused)
    return ws


def credential_actor(state: ControlState, token: str) -> access.Actor | None:
    """Who a management credential acts for: a workspace admin token (owner) or a personal
    token; None when it is neither."""
    if token.startswith(user_tokens.PREFIX):
        return user_tokens.token_actor(state, token)
    ws = state.workspace_by_token_hash(hash_secret(token))
    return access.Actor(ws.workspace_id, "owner") if ws is not None else None


async def service_key(request: Request, api_key: str | None = Security(API_KEY),
                      authorization: HTTPAuthorizationCredentials | None = Security(API_KEY_BEARER)) -> ServiceCaller:
    """The service whose API key is presented as ``Api-Key`` or ``Authorization: Bearer``."""
    key = api_key or _bearer(authorization)
    if not key:
        raise http_error(Refusal(401, "missing API key: send Api-Key: rs_eml_…", code=MISSING))
    caller = await checked(request, "api_key", key, key_owner, "invalid API key")
    if caller.service.status == "disabled":  # its limits as they are, as on every send door's answer
        rt: ApiContext = request.app.state.runtime
        raise http_error(Refusal(403, "the service is disabled", limits=await rt.limits.peek(caller.service.service_id)))
    request.state.service_id = caller.service.service_id  # for the access log
    actors.api_key(caller.key.key_id)
    return caller


async def full_access_key(caller: ServiceCaller = Depends(service_key)) -> ServiceCaller:
    """``service_key``, and the key has ``permission: full_access`` (Resend's management
    paths: domains, api-keys, suppressions, webhooks, templates, emails list); else 403
    ``restricted_api_key`` as Resend answers a sending-only key there."""
    if caller.key.permission != "full_access":
        raise http_error(Refusal(403, "this API key is restricted to sending emails; use a full_access key",
                                 code=RESTRICTED))
    return caller


def key_owner(state: ControlState, key: str) -> ServiceCaller | None:
    """The service (disabled ones too) and key record of a presented API key; None when the
    key is unknown, revoked or its service deleted. Also the SMTP submission's AUTH check."""
    rec = state.api_key_by_hash(hash_secret(key)) if key.startswith(API_KEY_PREFIX) else None
    svc = state.services.get(rec.service_id) if rec else None
    return ServiceCaller(svc, rec) if rec is not None and svc is not None else None


async def owned_service(service_id: str, ws: WorkspaceSaved = Depends(workspace), rt: ApiContext = Depends(runtime)) -> ServiceSaved:
    """The service ``service_id`` of the caller's workspace, else 404 (``workspace`` caught up)."""
    svc = rt.control.state.service(ws.workspace_id, service_id)
    if svc is None:
        raise HTTPException(404, f"service {service_id} not found")
    return svc
