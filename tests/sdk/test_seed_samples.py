"""The seeds' own client samples (curl, Python requests, Node fetch), with only the URL, key
and sender changed, still work next to the Resend compatibility: the same process as the
SDK tests answers them, and their mail arrives."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import requests

FROM = "Acme <hello@acme.test>"

NODE_FETCH = """
const response = await fetch(process.env.URL + "/emails", {
  method: "POST",
  headers: {"Api-Key": process.env.EMAIL_API_KEY, "Content-Type": "application/json"},
  body: JSON.stringify({from: process.env.FROM, to: ["user@example.com"], subject: "Welcome (fetch)",
                        message: "<p>Welcome to Acme.</p>"}),
});
if (!response.ok) {
  throw new Error(`Email failed: ${response.status} ${await response.text()}`);
}
const { id } = await response.json();
console.log(id);
"""

NODE_FETCH_SERVICE = """
const res = await fetch(`${process.env.URL}/api/email/services/${process.env.SERVICE_ID}/send`, {
  method: 'POST',
  headers: {Authorization: `Bearer ${process.env.RUNSITE_EMAIL_KEY}`, 'Content-Type': 'application/json'},
  body: JSON.stringify({from: process.env.FROM, to: ['user@gmail.com'], subject: 'Welcome (fetch, service)',
                        html: '<p>Thanks for signing up!</p>'}),
});
console.log((await res.json()).id);
"""


def _node(sdk_world, script: str) -> str:
    assert shutil.which("node"), "node is missing: run `make test-deps`"
    env = {**os.environ, "URL": sdk_world.url, "EMAIL_API_KEY": sdk_world.key, "RUNSITE_EMAIL_KEY": sdk_world.key,
           "SERVICE_ID": sdk_world.service_id, "FROM": FROM}
    out = subprocess.run(["node", "--input-type=module", "-e", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_node_fetch_samples(sdk_world):
    for script, subject in ((NODE_FETCH, "Welcome (fetch)"), (NODE_FETCH_SERVICE, "Welcome (fetch, service)")):
        email_id = _node(sdk_world, script)
        assert sdk_world.mail_for(email_id).message["Subject"] == subject


def test_python_requests_sample(sdk_world):
    response = requests.post(f"{sdk_world.url}/emails",
                             headers={"Api-Key": sdk_world.key, "Content-Type": "application/json"},
                             json={"from": FROM, "to": ["user@example.com"], "subject": "Welcome (requests)",
                                   "message": "<p>Welcome to Acme.</p>"}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "sent" and body["mode"] == "production" and body["to"] == ["user@example.com"]
    assert sdk_world.mail_for(body["id"]).message["Subject"] == "Welcome (requests)"
    bad = requests.post(f"{sdk_world.url}/emails", headers={"Api-Key": sdk_world.key},
                        json={"from": FROM, "to": ["nobody"], "subject": "x", "message": "x"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"].startswith("to:")


def test_curl_sample(sdk_world):
    assert shutil.which("curl"), "curl is missing"
    out = subprocess.run(["curl", "-s", f"{sdk_world.url}/emails", "-H", f"Api-Key: {sdk_world.key}",
                          "-H", "Content-Type: application/json",
                          "-d", json.dumps({"from": FROM, "to": ["user@example.com"], "subject": "Welcome (curl)",
                                            "message": "<p>Welcome to Acme.</p>"})],
                         capture_output=True, text=True, timeout=30)
    email_id = json.loads(out.stdout)["id"]
    assert sdk_world.mail_for(email_id).message["Subject"] == "Welcome (curl)"
