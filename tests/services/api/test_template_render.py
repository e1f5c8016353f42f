"""The template engine (services/api/template_render.py): whatever the template and the
values, rendering returns or raises ``TemplateError`` (the send's 422) — never anything
else; and a value is substituted once, escaped in HTML, never rendered again."""
from __future__ import annotations

import html as html_lib

from hypothesis import HealthCheck, given, settings, strategies as st

from services.api import template_render
from services.api.template_render import TemplateError, render
from shared import events as ev

KEYS = st.sampled_from(["NAME", "CREDITS", "X", "_a1", "B"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=40), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
PIECES = st.one_of(st.text(max_size=20), KEYS.map(lambda k: "{{{" + k + "}}}"), KEYS.map(lambda k: "{{{ " + k + " }}}"),
                   st.sampled_from(["{{{", "}}}", "{{", "{{{1X}}}", "{{{NAME}}"]))
SOURCES = st.lists(PIECES, max_size=12).map("".join)
VARIABLES = st.lists(st.builds(ev.TemplateVariable, key=KEYS, type=st.sampled_from(["string", "number"]),
                               fallback_value=st.one_of(st.none(), st.text(max_size=10), st.integers())),
                     max_size=5, unique_by=lambda v: v.key)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=st.one_of(st.none(), SOURCES), html=SOURCES, text=st.one_of(st.none(), SOURCES), variables=VARIABLES,
       values=st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), VALUES, max_size=6))
def test_rendering_never_raises_anything_but_the_422(subject, html, text, variables, values):
    content = ev.TemplateContent(subject=subject, html=html, text=text, variables=variables)
    try:
        out = render(content, values)
    except TemplateError as exc:
        assert exc.field.startswith(("template.variables.", "subject", "html", "text"))
        return
    declared = {v.key for v in variables}
    assert set(values) <= declared  # anything else was refused
    assert (out.subject is None, out.text is None) == (subject is None, text is None)
    if not template_render.placeholders(html) & declared:
        assert out.html == html  # nothing to substitute: the HTML as written


@given(value=st.text(max_size=30))
def test_a_value_is_substituted_once_and_escaped_in_html(value):
    content = ev.TemplateContent(subject="{{{A}}}", html="<p>{{{A}}}</p>", text="{{{A}}}",
                                 variables=[ev.TemplateVariable(key="A")])
    out = render(content, {"A": value + "{{{A}}}"})
    assert out.text == value + "{{{A}}}" and out.subject == value + "{{{A}}}"  # not rendered again
    assert out.html == "<p>" + html_lib.escape(value + "{{{A}}}", quote=True) + "</p>"


def test_fallbacks_missing_and_types():
    content = ev.TemplateContent(html="{{{N}}} {{{S}}}", variables=[
        ev.TemplateVariable(key="N", type="number", fallback_value=2), ev.TemplateVariable(key="S")])
    assert render(content, {"S": "x"}).html == "2 x"
    assert render(content, {"S": "x", "N": 3.5}).html == "3.5 x"
    assert render(content, {"S": "x", "N": 10 ** 400}).html == str(10 ** 400) + " x"  # too large for a float: was a 500
    for values, message in [({}, "template.variables.S: required: the template gives it no fallback_value"),
                            ({"S": "x", "N": True}, "template.variables.N: must be a number, got bool"),
                            ({"S": "x", "N": float("inf")}, "template.variables.N: must be a number, got float")]:
        try:
            render(content, values)
        except TemplateError as exc:
            assert str(exc) == message
        else:
            raise AssertionError(f"{values} rendered")


def test_rendered_size_is_capped_while_rendering():
    content = ev.TemplateContent(html="{{{A}}}" * 100, variables=[ev.TemplateVariable(key="A")])
    try:
        render(content, {"A": "x" * 30_000})  # 3 MB if it were built
    except TemplateError as exc:
        assert exc.field == "html" and "over 2097152 bytes" in exc.message
    else:
        raise AssertionError("a 3 MB part was rendered")
