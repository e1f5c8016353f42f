"""Dashboard test helpers: sign in with a form like a browser would, read CSRF tokens."""
from __future__ import annotations

import re

import httpx

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    return CSRF_RE.search(html).group(1)


async def sign_in(http: httpx.AsyncClient, token: str) -> str:
    """Sign ``http`` in (its cookie jar keeps the session); returns the session's CSRF token."""
    form = await http.get("/signin")
    r = await http.post("/signin", data={"csrf": csrf_of(form.text), "token": token})
    assert r.status_code == 303 and r.headers["location"] == "/services", r.text
    return csrf_of((await http.get("/services")).text)
