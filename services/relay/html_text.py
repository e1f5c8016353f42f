"""The plain-text part derived from an HTML-only send: a message given only HTML still gets a
text part (the send API's rule).

Why not html2text (used before): on the relay's event-loop thread it cost 3-9 ms for a
5 KB table-laid-out receipt (its pure-Python HTMLParser plus Markdown escaping), about half
of that thread's time in the end-to-end bench and more than the DKIM signatures; the relay's
throughput for HTML-only mail was bounded by it. Here the lexbor parser (selectolax, C)
builds the tree in ~40 µs and writes the text: blocks and table rows on
their own lines, cells separated by two spaces, list items as ``* ``, links as
``text (url)`` so they survive in the text part, ``<br>`` as a line break, images, scripts,
styles and the head dropped, whitespace (any Unicode space) collapsed. The parser and the text extraction run
in C (no Python recursion, so a deeply nested hostile document is harmless); Python only
marks block edges and link targets.

HTML tree construction is quadratic in nesting depth (each start tag checks the open
elements; lexbor has no depth cap): 20,000 nested ``<div>`` take ~0.5 s, 200,000 minutes.
A document with more than MAX_TAGS tags (real emails have a few hundred) therefore goes to
html2text, whose tokenizer is linear, so no body the API admits can stall the relay.

Contract: ``html_to_text(html)`` never raises for any ``str`` (malformed markup is parsed
the way a browser would) and returns text ending in one newline."""
from __future__ import annotations

import re

import html2text
from selectolax.lexbor import LexborHTMLParser, LexborNode

MAX_TAGS = 10_000

_SKIP = ["head", "script", "style", "template", "noscript", "svg", "iframe", "object", "title"]
_PARAGRAPH = frozenset("p h1 h2 h3 h4 h5 h6 table ul ol blockquote pre hr".split())
_BLOCK = frozenset(("div section article header footer main nav aside thead tbody tfoot address figure "
                    "figcaption form fieldset dl dt dd center").split())
_CELL = frozenset(("td", "th"))
_MARKED = _PARAGRAPH | _BLOCK | _CELL | {"tr", "li", "br", "a"}
# Markers written into the tree as text: a block edge (\x00, a line break), a paragraph edge
# (\x01, a blank line), a hard break (\x02, <br>), a table cell (\x03). Runs of edges collapse into one break
# (a paragraph edge in the run makes it a blank line).
# str.translate (and a regex character class) walk non-ASCII text character by character
# (~10 ms for a 50 KB body with one "·" in it): markers are looked for with ``in`` (a fast
# substring search) and removed only when the HTML has any, which real mail never has.
_MARK_CHARS = "\x00\x01\x02\x03"
_MARKS = re.compile("[\x00-\x03]")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
_LINK_SCHEMES = ("http://", "https://", "mailto:")


def html_to_text(html: str) -> str:
    """Readable plain text of ``html`` (see the module docstring)."""
    if html.count("<") > MAX_TAGS:
        return _linear(html)
    tree = LexborHTMLParser(_MARKS.sub("", html) if any(m in html for m in _MARK_CHARS) else html)
    if tree.root is None:
        return "\n"
    tree.strip_tags(_SKIP)
    for node in _mark_blocks(tree.root):  # links last: their label is read with the other marks in it
        _mark_link(node)
    return _lines(tree.root.text(deep=True) or "")


def _mark_blocks(root: LexborNode) -> list[LexborNode]:
    """Write the marks of blocks, paragraphs, rows, cells, list items and breaks; return the
    links. One walk of the tree finds the elements (six CSS queries, each compiling its
    selector and walking the tree, cost 70 µs of a 5 KB receipt's ~240); the marks are written
    after the walk, which must not see the tree change under it."""
    links, row_start = [], False
    for node in [node for node in root.traverse() if node.tag in _MARKED]:
        tag = node.tag
        if tag == "tr":
            # A row's edges are marked by its first cell (and the table's own edge after the
            # last row): the parser keeps no text in a row outside its cells, so a mark before
            # and after each row (two insertions, ~0.6 µs each) would add nothing.
            row_start = True
        elif tag in _CELL:
            # a line break before a row's first cell, a cell separator (that survives the
            # collapsing of spaces) before each other one
            node.insert_before("\x00" if row_start else "\x03")
            row_start = False
        elif tag in _PARAGRAPH:
            _around(node, "\x01")
        elif tag in _BLOCK:
            _around(node, "\x00")
        elif tag == "li":
            node.insert_before("\x00* ")
            node.insert_after("\x00")
        elif tag == "br":
            node.insert_after("\x02")
        elif "href" in node.attributes:
            links.append(node)
    return links


def _mark_link(node: LexborNode) -> None:
    """``label (url)``: the target of a web or mailto link survives in the text."""
    href = (node.attributes.get("href") or "").strip()
    label = (node.text(deep=True) or "").strip()
    if href.startswith(_LINK_SCHEMES) and href != label and href.removeprefix("mailto:") != label:
        node.insert_after(f" ({_SPACES.sub('', href)})")


def _lines(marked: str) -> str:
    """The tree's text with its marks turned into lines. String methods only: the regular
    expressions this replaced (a run of spaces, a run of marks with a callback per run, then
    blank lines) took a third of the function's time for a 5 KB receipt."""
    # whitespace collapsed (all Unicode whitespace, as str.split sees it); a paragraph edge
    # becomes a blank line between two block edges
    text = " ".join(marked.split()).replace("\x01", "\x00\n\n\x00")
    # a run of block edges is one line break: the pieces between edges, the blank ones dropped
    text = "\n".join([piece for piece in text.split("\x00") if piece.strip(" ")])
    text = "\n".join([line.strip() for line in text.replace("\x02", "\n").replace("\x03", "  ").split("\n")])
    while "\n\n\n" in text:  # at most one blank line (each pass shortens a run by a third)
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def _around(node: LexborNode, mark: str) -> None:
    node.insert_before(mark)
    node.insert_after(mark)


def _linear(html: str) -> str:
    conv = html2text.HTML2Text()
    conv.body_width = 0
    conv.ignore_images = True
    return conv.handle(html).strip() + "\n"
