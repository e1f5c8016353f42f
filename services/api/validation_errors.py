"""Turn pydantic/FastAPI validation errors into one line that names the field."""
from __future__ import annotations

from typing import Any, Sequence

_WHERE = {"body", "query", "path", "header"}  # FastAPI's first element: where in the request
_SKIP = {"str", "list[str]", "function-after"}


def _field(loc: Sequence[Any]) -> str:
    parts = []
    for i, p in enumerate(loc):
        p = str(p)
        if (i == 0 and p in _WHERE) or p in _SKIP or p.startswith("function-") or p.startswith("union["):
            continue
        parts.append(f"[{p}]" if p.isdigit() else p)
    name = ".".join(parts).replace(".[", "[").replace("from_", "from")
    return name or "body"


def first_error(errors: Sequence[Any]) -> str:  # pydantic's ErrorDetails, or FastAPI's dicts
    err = errors[0]
    kind = err.get("type")
    if kind == "json_invalid":
        return "body: invalid JSON"
    field = _field(err.get("loc", ()))
    if kind == "missing":
        return f"{field}: field required"
    if kind == "extra_forbidden":
        return f"{field}: unknown field"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if field == "body" and ": " in msg:
        return msg  # a whole-model rule names its own field
    return f"{field}: {msg}"
