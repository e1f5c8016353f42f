"""The dev inbox shows a message's inline images (shared/devinbox.py ``show_inline``): the
dashboard's sandboxed frame loads nothing but ``data:`` images, so ``cid:`` references become
``data:`` URLs there, while the API's ``html`` stays the message's own."""
from __future__ import annotations

import base64

from services.relay.mime import build
from shared import events as ev
from shared.devinbox import DevInbox

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))


async def test_cid_references_become_data_urls_for_the_viewer_only(tmp_path):
    req = ev.SendRequested(
        workspace_id="w", service_id="s", email_id=ev.new_id(), mode="production", sending_domain="acme.test",
        to=["ann@example.com"], recipients=["ann@example.com"], subject="Inline", text=None,
        html='<p><img src="cid:logo"> <img src="cid:unknown"></p>',
        attachments=[ev.Attachment(filename="logo.png", content_type="image/png",
                                   content_base64=base64.b64encode(PNG).decode(), content_id="logo")],
        **{"from": "Acme <a@acme.test>"})
    inbox = DevInbox(tmp_path / "inbox.sqlite3")
    mid = await inbox.store("a@acme.test", ["ann@example.com"], build(req, "acme.test"))
    shown = inbox.message(mid, show_inline=True)["html"]
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in shown
    assert 'src="cid:unknown"' in shown  # no such part: left as written
    assert inbox.message(mid)["html"] == req.html  # the API's view is the message as sent
    inbox.close()
