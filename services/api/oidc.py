"""OpenID Connect sign-in (authorization code flow with PKCE, state and nonce), as a relying
party of ``POSTLINE_OIDC_ISSUER``.

``begin`` answers the provider's authorization URL and a *flow* value the dashboard keeps in
a short-lived cookie: the state, nonce and PKCE verifier, sealed (AES-GCM) under the master
key, so the callback may land on any API process. ``finish`` checks the state, exchanges the
code (client_secret_basic, with the verifier) and validates the id token with joserfc: the
signature against the issuer's published keys (``jwks_uri``), ``iss``, ``aud`` (and ``azp``
when several audiences), ``exp``/``iat`` (60 s leeway) and the nonce. The address comes from
the id token, else from the userinfo endpoint (for the same ``sub``); it must be verified
(``email_verified``). Discovery and keys are fetched per process and kept ``CACHE_SECONDS``
(a key rotation at the provider is picked up at the next unknown ``kid``)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidTag
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.api.refusal import Refusal
from shared.crypto import seal, unseal
from shared.settings import Settings

CALLBACK_PATH = "/signin/oidc/callback"
FLOW_SECONDS = 600  # from the redirect to the provider until its answer comes back
CACHE_SECONDS = 3600
TIMEOUT = 10.0
LEEWAY = 60
_cache: dict[str, tuple[float, Any]] = {}


@dataclass(frozen=True)
class Identity:
    subject: str  # "<issuer>|<sub>": unique across providers
    email: str


def enabled(settings: Settings) -> bool:
    return bool(settings.oidc_issuer)


def allowed_domains(settings: Settings) -> set[str]:
    return {d.strip().lower().lstrip("@") for d in settings.oidc_allowed_domains.split(",") if d.strip()}


def redirect_uri(settings: Settings) -> str:
    return f"{settings.base_url}{CALLBACK_PATH}"


async def _get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        r = await client.get(url, headers=headers)
        r.raise_for_status()
        return r.json()


async def _cached(url: str, fresh: bool = False) -> Any:
    hit = _cache.get(url)
    if hit and not fresh and hit[0] > time.monotonic():
        return hit[1]
    value = await _get_json(url)
    _cache[url] = (time.monotonic() + CACHE_SECONDS, value)
    return value


async def discovery(settings: Settings) -> dict[str, Any]:
    assert settings.oidc_issuer is not None
    doc: dict[str, Any] = await _cached(settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration")
    if str(doc.get("issuer", "")).rstrip("/") != settings.oidc_issuer.rstrip("/"):
        raise ValueError("the discovery document names another issuer")  # OpenID Connect Discovery §4.3
    return doc


def _pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def begin(settings: Settings) -> tuple[str, str]:
    """The provider's authorization URL to redirect to, and the sealed flow for the cookie."""
    meta = await discovery(settings)
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    query = {"response_type": "code", "client_id": settings.oidc_client_id, "redirect_uri": redirect_uri(settings),
             "scope": "openid email", "state": state, "nonce": nonce,
             "code_challenge": _pkce_challenge(verifier), "code_challenge_method": "S256"}
    flow = json.dumps({"state": state, "nonce": nonce, "verifier": verifier, "until": time.time() + FLOW_SECONDS})
    return f"{meta['authorization_endpoint']}?{urlencode(query)}", seal(settings.master_key, flow.encode(), "oidc-flow")


def _flow(settings: Settings, sealed: str | None) -> dict[str, Any] | None:
    try:
        flow: dict[str, Any] = json.loads(unseal(settings.master_key, sealed or "", "oidc-flow"))
    except (InvalidTag, ValueError):
        return None
    return flow if flow.get("until", 0) > time.time() else None


async def finish(settings: Settings, sealed_flow: str | None, params: dict[str, str]) -> Identity | Refusal:
    """The signed-in identity from the provider's answer (``params``: the callback's query);
    a refusal (400 a broken or replayed flow, 401 an identity not proven) otherwise."""
    flow = _flow(settings, sealed_flow)
    if flow is None or not hmac.compare_digest(flow["state"], params.get("state", "")):
        return Refusal(400, "The single sign-on answer does not match a sign-in started here (or it took over "
                            "10 minutes). Try again.")
    if "error" in params:
        return Refusal(401, f"The identity provider refused the sign-in: {params['error'][:100]}")
    try:
        meta = await discovery(settings)
        tokens = await _exchange(settings, meta, params.get("code", ""), flow["verifier"])
        claims = await _id_token_claims(settings, meta, str(tokens.get("id_token", "")), flow["nonce"])
        if "email" not in claims and meta.get("userinfo_endpoint"):
            info = await _get_json(meta["userinfo_endpoint"], {"Authorization": f"Bearer {tokens['access_token']}"})
            if info.get("sub") == claims["sub"]:
                claims = {**info, **claims}
    except (httpx.HTTPError, JoseError, KeyError, TypeError, ValueError) as exc:
        return Refusal(401, f"The single sign-on answer could not be verified ({type(exc).__name__}).", cause=exc)
    email = str(claims.get("email") or "").lower()
    if not email or claims.get("email_verified") is not True:
        return Refusal(401, "The identity provider did not give a verified email address.")
    return Identity(f"{claims['iss']}|{claims['sub']}", email)


async def _exchange(settings: Settings, meta: dict[str, Any], code: str, verifier: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        r = await client.post(meta["token_endpoint"], auth=(settings.oidc_client_id or "", settings.oidc_client_secret or ""),
                              data={"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": redirect_uri(settings), "code_verifier": verifier})
        r.raise_for_status()
        tokens: dict[str, Any] = r.json()
        return tokens


async def _id_token_claims(settings: Settings, meta: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
    """The id token's claims once its signature and claims are valid; raises ``JoseError``."""
    algorithms = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in algorithms if a != "none"]
    try:
        keys = KeySet.import_key_set(await _cached(meta["jwks_uri"]))
        token = jwt.decode(id_token, keys, algorithms=algorithms)
    except JoseError:  # maybe a rotated key: fetch the set once more
        keys = KeySet.import_key_set(await _cached(meta["jwks_uri"], fresh=True))
        token = jwt.decode(id_token, keys, algorithms=algorithms)
    registry = jwt.JWTClaimsRegistry(leeway=LEEWAY, iss={"essential": True, "value": meta["issuer"]},
                                     aud={"essential": True, "value": settings.oidc_client_id or ""},
                                     sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
                                     nonce={"essential": True, "value": nonce})
    registry.validate(token.claims)
    aud = token.claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and token.claims.get("azp") != settings.oidc_client_id:
        raise ValueError("azp")
    claims: dict[str, Any] = dict(token.claims)
    return claims
