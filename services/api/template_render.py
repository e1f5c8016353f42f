"""The template engine: ``{{{KEY}}}`` substitution and nothing else (docs/templates.md).

Logic-less on purpose: no sections, loops, partials, helpers or expressions, so a template
cannot run code, read files or loop. One left-to-right pass of one regular expression
(linear in the template's size); a substituted value is never scanned again, so a value
that itself contains ``{{{KEY}}}`` is sent as those characters. Each rendered part is
capped at ``MAX_RENDERED_BYTES`` while it is built (a large value used many times cannot
blow up memory). Values are HTML-escaped in the HTML part, left as they are in the subject
and the text part.

``render`` raises only ``TemplateError`` (the 422 a send answers), whatever the input."""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from shared import events as ev

PLACEHOLDER = re.compile(r"\{\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,49})\s*\}\}\}")
MAX_RENDERED_BYTES = 2 * 1024 * 1024  # per part (subject, html, text), after substitution


class TemplateError(Exception):
    """A send's template cannot be rendered with these variables: ``field`` names what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    html: str
    text: str | None


def placeholders(source: str) -> set[str]:
    """The variable keys ``source`` uses."""
    return set(PLACEHOLDER.findall(source))


def values_of(declared: Iterable[ev.TemplateVariable], given: Mapping[str, Any]) -> dict[str, str]:
    """Every declared variable's text: the send's value (of the declared type) or the
    fallback. Raises ``TemplateError`` for a missing value without fallback, a wrong type,
    or a key the template does not declare."""
    variables = {v.key: v for v in declared}
    for key in given:
        if key not in variables:
            raise TemplateError(f"template.variables.{key}", "not a variable of this template "
                                f"(it declares: {', '.join(sorted(variables)) or 'none'})")
    out = {}
    for key, var in variables.items():
        value = given.get(key, var.fallback_value)
        if value is None:
            raise TemplateError(f"template.variables.{key}", "required: the template gives it no fallback_value")
        out[key] = _as_text(key, var.type, value)
    return out


def _as_text(key: str, kind: str, value: Any) -> str:
    if kind == "number":
        # an int is always finite (and math.isfinite overflows on a huge one: a 500)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            raise TemplateError(f"template.variables.{key}", f"must be a number, got {type(value).__name__}")
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        raise TemplateError(f"template.variables.{key}", f"must be a string, got {type(value).__name__}")
    return value


def substitute(source: str, values: Mapping[str, str], escape: bool, field: str) -> str:
    """``source`` with each ``{{{KEY}}}`` of ``values`` replaced (HTML-escaped when
    ``escape``), in one pass; unknown keys stay as written. Raises ``TemplateError`` when the
    result would exceed ``MAX_RENDERED_BYTES``."""
    budget = [MAX_RENDERED_BYTES - len(source.encode("utf-8", "surrogatepass"))]

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            return match.group(0)
        text = html.escape(values[key], quote=True) if escape else values[key]
        budget[0] -= len(text.encode("utf-8", "surrogatepass")) - len(match.group(0))
        if budget[0] < 0:
            raise TemplateError(field, f"the rendered {field} would be over {MAX_RENDERED_BYTES} bytes")
        return text

    if budget[0] < 0:
        raise TemplateError(field, f"over {MAX_RENDERED_BYTES} bytes")
    return PLACEHOLDER.sub(one, source)


def render(content: ev.TemplateContent, given: Mapping[str, Any]) -> Rendered:
    """The subject, HTML and text of ``content`` with ``given`` variables (see the module)."""
    values = values_of(content.variables, given)
    return Rendered(
        subject=None if content.subject is None else substitute(content.subject, values, False, "subject"),
        html=substitute(content.html, values, True, "html"),
        text=None if content.text is None else substitute(content.text, values, False, "text"))
