"""The HTML link rewriter: examples, then properties over arbitrary HTML (hypothesis).

Properties: the rewritten document tokenizes to the same sequence of tags, text and
comments as the original, except the hrefs of tracked links; no non-http(s) URL is ever
rewritten; every tracked link decodes (through a real signed token) to exactly the URL the
tokenizer read from the original; every byte outside the edited href values is kept."""
from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.relay.rewrite import rewrite, trackable
from shared.tracking import Tokens

TOKENS = Tokens(b"k" * 32)
BASE = "https://track.example/t/c/"


def link_for(i: int, url: str) -> str:
    return BASE + TOKENS.make("click", "00000000-0000-4000-8000-000000000001", "svc", "ann@example.com", i, url)


class Tokenize(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        self.out.append(("start", tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.out.append(("startend", tag, attrs))

    def handle_endtag(self, tag):
        self.out.append(("end", tag))

    def handle_data(self, data):
        if self.out and self.out[-1][0] == "data":
            self.out[-1] = ("data", self.out[-1][1] + data)
        else:
            self.out.append(("data", data))

    def handle_comment(self, data):
        self.out.append(("comment", data))

    def handle_decl(self, decl):
        self.out.append(("decl", decl))

    def handle_pi(self, data):
        self.out.append(("pi", data))

    def unknown_decl(self, data):
        self.out.append(("unknown", data))


def tokens(html: str) -> list[tuple]:
    p = Tokenize()
    p.feed(html)
    p.close()
    return p.out


def check_rewrite(html: str) -> None:
    before, after_html = tokens(html), rewrite(html, link_for)
    after = tokens(after_html)
    assert len(before) == len(after), (html, after_html)
    for b, a in zip(before, after):
        if b[0] in ("start", "startend") and b[1] in ("a", "area") and b[2] != a[2]:
            assert a[:2] == b[:2]
            names = [n for n, _ in b[2]]
            assert [n for n, _ in a[2]] == names
            first = names.index("href")
            url = trackable(b[2][first][1])
            assert url is not None and "data-postline-notrack" not in names  # only http(s) links change
            new = a[2][first][1]
            assert new.startswith(BASE)
            tok = TOKENS.verify(new[len(BASE):], "click")
            assert tok is not None and tok.url == url  # round-trips exactly
            assert [x for i, x in enumerate(a[2]) if i != first] == [x for i, x in enumerate(b[2]) if i != first]
        else:
            assert a == b, (html, after_html)


# --------------------------------------------------------------------------- examples

def test_links_rewritten_others_left_alone_and_bytes_kept():
    html = ('<html><body><p>Hi <a href="https://ex.com/a?x=1&amp;y=%20#frag" class=x>go</a>\n'
            "<A HREF='mailto:a@b.c'>mail</A> <a href=#top>top</a> <a href=/rel>rel</a> <a href=tel:+1>t</a>\n"
            '<a data-postline-notrack href="http://keep.me/">keep</a> <a href=HTTP://UPPER.example/X>u</a>\n'
            "<area href=' https://spaced.example/ '><!-- <a href=\"https://in.comment/\"> --></body></html>")
    out = rewrite(html, link_for)
    assert "mailto:a@b.c" in out and "href=#top" in out and "href=/rel" in out and "tel:+1" in out
    assert 'href="http://keep.me/"' in out and "https://in.comment/" in out
    assert out.count(BASE) == 3
    urls = [TOKENS.verify(a[2][0][1][len(BASE):], "click") for a in tokens(out)
            if a[0] == "start" and a[2] and a[2][0][0] == "href" and a[2][0][1].startswith(BASE)]
    assert [u.url for u in urls] == ["https://ex.com/a?x=1&y=%20#frag", "HTTP://UPPER.example/X",
                                     "https://spaced.example/"]
    assert [u.link for u in urls] == [0, 1, 2]
    # outside the edited values, every character is the sender's
    assert out.startswith('<html><body><p>Hi <a href="') and out.endswith("--></body></html>")
    assert '" class=x>go</a>\n<A HREF=\'mailto:a@b.c\'>' in out
    check_rewrite(html)


def test_pixel_goes_before_the_last_body_end_tag_or_at_the_end():
    out = rewrite("<html><body><p>x</p></BODY></html>", None, "https://t.example/t/o/TOK")
    assert out.startswith("<html><body><p>x</p><img src=\"https://t.example/t/o/TOK\"") and out.endswith("</BODY></html>")
    assert rewrite("<p>no body</p>", None, "https://t/o/X").startswith("<p>no body</p><img ")
    assert rewrite("<p>x</p>") == "<p>x</p>"


def test_malformed_html_never_raises():
    for html in ["<a href=", "<a href='https://x", "<a href=https://x.example/>", "</a><a>", "<<a href=https://y>>",
                 "<a href=\"https://a\" href=\"https://b\">two</a>", "<![CDATA[<a href=https://z>]]>", "&#xZZ;<a"]:
        check_rewrite(html)


# --------------------------------------------------------------------------- properties

URLS = st.one_of(
    st.builds(lambda s, rest: f"{s}://{rest}", st.sampled_from(["http", "https", "HTTP", "Https"]),
              st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)),
    st.sampled_from(["mailto:a@b.c", "#anchor", "/relative", "tel:+15551234", "javascript:alert(1)", "data:,x",
                     "ftp://files.example/", " https://padded.example/ ", "", "https://ex.com/?a=1&b=2#f"]),
    st.text(max_size=20),
)
ATTR_VALUE = st.one_of(
    URLS.map(lambda u: '"' + u.replace("&", "&amp;").replace('"', "&quot;") + '"'),
    URLS.map(lambda u: "'" + u.replace("'", "&#39;") + "'"),
    URLS.filter(lambda u: u and not any(c in u for c in " \t\n\r\f>\"'`=<")),
)
TAG = st.builds(
    lambda name, before, value, after, close: f"<{name}{before} href={value}{after}>{close}",
    st.sampled_from(["a", "A", "area", "link", "img", "div"]),
    st.sampled_from(["", " class=x", " data-postline-notrack", ' title="a > b"', " id='q'"]),
    ATTR_VALUE,
    st.sampled_from(["", " target=_blank", " data-postline-notrack=1", " /"]),
    st.sampled_from(["", "text</a>", "</area>"]),
)
CHUNK = st.one_of(TAG, st.text(max_size=30), st.sampled_from(
    ["<p>", "</p>", "<!-- c -->", "<!doctype html>", "<script>var a='<a href=\"https://s\">';</script>", "<br/>",
     "&amp;", "&lt;a href=https://x&gt;", "<style>a{}</style>", "</body>", "<body>", "\r\n", "<"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CHUNK, max_size=12).map("".join))
def test_rewriter_keeps_the_document_and_round_trips_every_url(html):
    check_rewrite(html)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_rewriter_on_arbitrary_text(html):
    check_rewrite(html)
    out = rewrite(html, None, "https://t/o/X")
    assert out.replace(out[out.index("<img src=\"https://t/o/X\""):].split("/>", 1)[0] + "/>", "", 1) == html
