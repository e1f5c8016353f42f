"""The text part derived from HTML-only sends: readable, links kept, nothing hidden leaks."""
from hypothesis import given, settings, strategies as st

from services.relay.html_text import html_to_text

RECEIPT = ("<html><head><title>Receipt</title><style>p{color:red}</style></head><body>"
           "<h1>Receipt #7</h1><p>Thanks, <b>Ann</b>! Track it <a href='https://shop.example/o/7?a=1&amp;b=2'>here</a>"
           " or write to <a href='mailto:help@acme.test'>help@acme.test</a>.</p>"
           "<table><tr><td>Mug</td><td>9.99</td></tr><tr><td>Tea</td><td>4.50</td></tr></table>"
           "<ul><li>one<li>two</ul>line<br>break<img src='https://x.test/p.gif' alt='pixel'>"
           "<script>steal()</script><div><p>inner</p>after</div></body></html>")


def test_blocks_rows_and_list_items_are_lines_and_links_keep_their_target():
    text = html_to_text(RECEIPT)
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text.splitlines()
    assert lines[0] == "Receipt #7"  # the <title> is head matter, not body text
    assert "Thanks, Ann! Track it here (https://shop.example/o/7?a=1&b=2) or write to help@acme.test." in lines
    assert "Mug  9.99" in lines and "Tea  4.50" in lines
    assert "* one" in lines and "* two" in lines
    assert lines[lines.index("line") + 1] == "break"
    assert lines[-3:] == ["inner", "", "after"]


def test_scripts_styles_and_images_leave_nothing():
    text = html_to_text(RECEIPT)
    assert "steal" not in text and "color" not in text and "pixel" not in text and "<" not in text


def test_hostile_nesting_and_empty_input():
    assert html_to_text("<div>" * 200_000 + "deep").strip() == "deep"  # linear: the html2text path
    assert html_to_text("") == "\n"
    assert html_to_text("a\x00b\x01c\x02d\x03e") == "abcde\n"  # our markers cannot be injected
    assert html_to_text("<p>caf\u00e9 \x00\u00b7 b\x03</p>") == "caf\u00e9 \u00b7 b\n"  # ... in non-ASCII text either


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text())
def test_never_raises_and_ends_in_one_newline(html):
    text = html_to_text(html)
    assert isinstance(text, str) and text.endswith("\n")


def test_runs_of_edges_make_one_break_and_paragraphs_one_blank_line():
    # nested blocks: one line break however many edges meet; a paragraph among them: one blank line
    assert html_to_text("a<div><div><section>b</section></div></div>c") == "a\nb\nc\n"
    assert html_to_text("a<div> <div>\n<p>b</p> </div></div>c") == "a\n\nb\n\nc\n"
    # <br> lines are kept: two breaks leave a blank line, more never leave two
    assert html_to_text("a<br><br>b<br><br><br><br>c") == "a\n\nb\n\nc\n"
    # every kind of Unicode space collapses into one, and none is left at a line's ends
    assert html_to_text("<p>\u2003one\u00a0\t two\u3000</p>") == "one two\n"


def test_each_row_is_one_line_even_when_its_first_cell_starts_with_a_block():
    # laid out as marketing mail is: a block inside the cell (the block's own edge makes the
    # second cell a line of its own); no blank line between the rows (once a lone cell mark
    # before the block left one)
    html = ("<table><tr><td><div>Item 1</div></td><td>2.00</td></tr>"
            "<tr><td><div>Item 2</div></td><td>3.00</td></tr></table>")
    assert html_to_text(html) == "Item 1\n2.00\nItem 2\n3.00\n"
    # implied rows and row groups (thead after cells) are lines as well
    assert html_to_text("<table><th>a<thead><th><dd>b") == "a\nb\n"
    assert html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>after") == "a  b\nc\n\nafter\n"
