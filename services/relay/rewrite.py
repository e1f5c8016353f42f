"""Rewrite an HTML part for tracking: links to signed redirects, an open pixel at the end.

The document is read by the standard library's HTML tokenizer (``html.parser``), and only
the exact character spans of the rewritten ``href`` values change (plus the pixel, inserted
before the last ``</body>`` or appended): every other byte stays as the sender wrote it.
Attribute spans are found with the tokenizer's own attribute pattern over the tag's raw
text, so what is edited is exactly what the tokenizer read; a tag whose attributes do not
line up with what it reported is left alone.

What is rewritten: the first ``href`` of ``<a>`` and ``<area>`` when its value (entities
decoded, surrounding whitespace removed, as a browser reads it) starts with ``http://`` or
``https://`` (any case). Left alone: every other scheme (``mailto:``, ``tel:``, ``data:``,
``javascript:``), relative links and ``#anchors``, and tags carrying ``data-postline-notrack``.
The redirect target is that decoded value, so a click lands on the exact original URL."""
from __future__ import annotations

from html import escape
from html.parser import HTMLParser, attrfind_tolerant, tagfind_tolerant  # type: ignore[attr-defined]  # private, not in typeshed
from typing import Callable

LINK_TAGS = ("a", "area")
NOTRACK = "data-postline-notrack"
_WS = " \t\n\r\f"


def trackable(value: str | None) -> str | None:
    """The URL a browser would follow if it is http(s), else None."""
    if not value:
        return None
    url = value.strip(_WS)
    head = url[:8].lower()
    return url if head.startswith("http://") or head.startswith("https://") else None


class _Scanner(HTMLParser):
    """Collects (offset, raw tag text, attrs) of link tags and the offset of the last </body>."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.line_starts.append(i + 1)
        self.links: list[tuple[int, str, list]] = []
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in LINK_TAGS:
            self.links.append((self._offset(), self.get_starttag_text() or "", attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


def _href_span(raw: str, attrs: list) -> tuple[int, int] | None:
    """Span (in ``raw``) of the first href's value, quotes included, if it is consistent
    with ``attrs`` as the tokenizer reported them; None otherwise."""
    m = tagfind_tolerant.match(raw, 1)
    if not m:
        return None
    k, i = m.end(), 0
    while k < len(raw):
        a = attrfind_tolerant.match(raw, k)
        if not a or i >= len(attrs) or a.group(1).lower() != attrs[i][0]:
            return None
        if attrs[i][0] == "href":
            return a.span(3) if a.group(2) else None
        k, i = a.end(), i + 1
    return None


def rewrite(html: str, link_for: Callable[[int, str], str] | None = None, pixel_url: str | None = None) -> str:
    """``html`` with each trackable link ``i`` (document order) replaced by
    ``link_for(i, url)`` and, given ``pixel_url``, an invisible 1x1 image at the end of the
    body. Never raises on malformed HTML: what the tokenizer cannot read is left as is."""
    scanner = _Scanner(html)
    scanner.feed(html)
    scanner.close()
    edits: list[tuple[int, int, str]] = []
    if link_for is not None:
        index = 0
        for offset, raw, attrs in scanner.links:
            names = {name for name, _ in attrs}
            href = next((v for name, v in attrs if name == "href"), None)
            url = trackable(href)
            if url is None or NOTRACK in names:
                continue
            span = _href_span(raw, attrs)
            if span is None:
                continue
            edits.append((offset + span[0], offset + span[1], '"' + escape(link_for(index, url)) + '"'))
            index += 1
    if pixel_url is not None:
        at = scanner.body_end if scanner.body_end is not None else len(html)
        edits.append((at, at, pixel_tag(pixel_url)))
    out, pos = [], 0
    for start, end, text in sorted(edits, key=lambda e: e[:2]):  # a link after </body> comes after the pixel
        out += [html[pos:start], text]
        pos = end
    out.append(html[pos:])
    return "".join(out)


def pixel_tag(url: str) -> str:
    return (f'<img src="{escape(url)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />')
