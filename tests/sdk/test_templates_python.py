"""Stored templates through Resend's Python SDK (PyPI ``resend``), unchanged but for the
base URL: create, publish, list, edit, send by alias with variables, duplicate, remove; the
mail the sink receives is rendered from the published version (docs/templates.md)."""
from __future__ import annotations

import pytest
import resend
from resend.exceptions import ResendError, ValidationError

FROM = "Acme <hello@acme.test>"
RECEIPT = {"name": "receipt (py)", "alias": "receipt-py", "from": FROM, "subject": "Receipt for order {{{ORDER}}}",
           "html": "<p>Thanks {{{NAME}}} for order {{{ORDER}}}</p>",
           "variables": [{"key": "NAME", "type": "string", "fallback_value": "friend"},
                         {"key": "ORDER", "type": "number"}]}


@pytest.fixture
def sdk(sdk_world):
    resend.api_key, resend.api_url = sdk_world.full_key, sdk_world.url
    yield sdk_world
    resend.api_key = sdk_world.key


def test_create_publish_and_send_a_template(sdk):
    created = resend.Templates.create(RECEIPT)
    tid = created["id"]
    assert created["object"] == "template"
    assert resend.Templates.publish(tid)["id"] == tid
    got = resend.Templates.get("receipt-py")
    assert (got["id"], got["status"], got["from"], got["variables"][1]["key"]) == (tid, "published", FROM, "ORDER")
    assert tid in [t["id"] for t in resend.Templates.list()["data"]]
    resend.Templates.update({"id": tid, "html": "<p>an unpublished edit {{{NAME}}}</p>"})  # the draft only
    resend.api_key = sdk.key  # a sending key sends
    sent = resend.Emails.send({"to": "ann@example.com",
                               "template": {"id": "receipt-py", "variables": {"ORDER": 42, "NAME": "<Ann>"}}})
    msg = sdk.mail_for(sent["id"]).message
    assert msg["Subject"] == "Receipt for order 42" and msg["From"] == FROM
    assert "<p>Thanks &lt;Ann&gt; for order 42</p>" in msg.get_body(("html",)).get_content()
    assert "Thanks <Ann> for order 42" in msg.get_body(("plain",)).get_content()  # derived from the HTML
    assert resend.Emails.get(sent["id"])["template_id"] == tid
    # the stats and the message log filter by template (the events carry its id)
    sdk.wait_record(sent["id"], lambda r: template_stats(sdk, tid)["delivered"] >= 1)
    log = sdk.api.admin("GET", f"/api/email/services/{sdk.service_id}/messages", params={"template": "receipt-py"})
    assert [m["id"] for m in log.json()["data"]] == [sent["id"]]


def test_template_errors_and_copies(sdk):
    tid = resend.Templates.create({**RECEIPT, "alias": "receipt-py-2"})["id"]
    resend.Templates.publish(tid)
    copy = resend.Templates.duplicate(tid)["id"]
    assert resend.Templates.get(copy)["status"] == "draft"
    removed = resend.Templates.remove(copy)
    assert (removed["object"], removed["id"], removed["deleted"]) == ("template", copy, True)
    resend.api_key = sdk.key
    with pytest.raises(ValidationError) as err:
        resend.Emails.send({"to": "ann@example.com", "template": {"id": tid, "variables": {"NAME": "Ann"}}})
    assert err.value.code == 422 and err.value.message.startswith("template.variables.ORDER: required")
    with pytest.raises(ResendError) as err:
        resend.Templates.list()  # a sending key does not manage
    assert err.value.code == 403 and err.value.error_type == "restricted_api_key"


def template_stats(sdk, template: str) -> dict:
    r = sdk.api.admin("GET", f"/api/email/services/{sdk.service_id}/stats", params={"period": "1h", "template": template})
    return r.json()["totals"]
