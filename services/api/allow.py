"""The ``Allow`` header of a 405: every method any route serves on the path. Starlette
names only the methods of the first route whose path matched, so ``DELETE /x/{id}`` next to
``GET /x/{id}`` (two routes) would answer ``Allow: GET`` alone.

Each method is probed through the routes' public ``matches`` (a ``FULL`` match means the
path and the method are served), which works for plain routes and included routers alike."""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import Scope

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: Starlette, scope: Scope) -> list[str]:
    """Methods (in ``METHODS`` order) that some route of ``app`` serves on ``scope``'s path."""
    return [m for m in METHODS
            if any(route.matches({**scope, "method": m})[0] == Match.FULL for route in app.router.routes)]
