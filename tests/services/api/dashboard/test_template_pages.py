"""The templates pages' refusals, which the browser test does not drive: a bad variables line
or a publish with an undeclared variable is a 400/422 page naming the field, a form without
its CSRF token is a 403, another workspace's template a 404, a version restores into the
draft. In-process app with the real embedded log."""
from __future__ import annotations

from tests.services.api.dashboard.support import sign_in
from tests.services.api.dashboard.test_pages import dashboard
from tests.support.postline import ADMIN_TOKEN


async def test_template_pages_refuse_and_restore(tmp_path):
    async with dashboard(tmp_path) as (rt, admin, http):
        csrf = await sign_in(http, ADMIN_TOKEN)
        sid = await admin.service("tpl")
        r = await http.post(f"/services/{sid}/templates", data={"csrf": csrf, "name": "t", "html": "<p>{{{A}}}</p>"})
        assert r.status_code == 303
        tid = r.headers["location"].rsplit("/", 1)[1]
        page = f"/services/{sid}/templates/{tid}"
        r = await http.post(f"{page}/publish", data={"csrf": csrf})
        assert r.status_code == 422 and "html: {{{A}}} is used but not declared in variables" in r.text
        r = await http.post(page, data={"csrf": csrf, "name": "t", "html": "<p>{{{A}}}</p>", "variables": "A number lots"})
        assert r.status_code == 400 and "variables[0]: fallback_value: must be a number" in r.text
        form = {"csrf": csrf, "name": "t", "html": "<p>{{{A}}} v1</p>", "variables": "A number 3"}
        assert (await http.post(page, data=form)).status_code == 200
        assert (await http.post(f"{page}/publish", data={"csrf": csrf})).status_code == 200
        assert (await http.post(page, data={**form, "html": "<p>{{{A}}} v2</p>"})).status_code == 200
        preview = await http.get(page, params={"samples": "A=7"})
        assert "&lt;p&gt;7 v2&lt;/p&gt;" in preview.text  # the draft, in the frame's srcdoc (escaped there)
        [version] = rt.control.state.versions_of_template(tid)
        r = await http.post(f"{page}/versions/{version.version_id}/restore", data={"csrf": csrf})
        assert r.status_code == 200 and rt.control.state.templates[tid].draft.html == "<p>{{{A}}} v1</p>"
        assert (await http.post(f"{page}/publish", data={})).status_code == 403  # no CSRF token
        other_id, other_token = await rt.create_workspace("other")
        other = await admin.as_token(other_token).service("theirs")
        assert (await http.get(f"/services/{other}/templates")).status_code == 404
        r = await http.post(f"/services/{sid}/templates/{tid}/delete", data={"csrf": csrf})
        assert r.status_code == 303 and tid not in rt.control.state.templates
