"""Management sequences that use a change at once (read your writes: docs/architecture.md): create a
service then its key and send with it; add a domain, verify it, switch to production and send
from it; add a suppression and list it; create a template, publish it, edit and publish it
again, send with it (docs/templates.md). Every request goes on its own connection (a new
client each time), to the next of ``urls`` in turn: on ``postline all`` the kernel hands each
connection to any API process, on Kafka the replicas alternate."""
from __future__ import annotations

import itertools
import threading

import httpx

from tests.support.postline import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Sequences:
    def __init__(self, urls: list[str], dns):
        self.urls, self.dns = urls, dns
        self._turn = itertools.count()
        self.failures: list[str] = []
        self.requests = 0
        self.sequences_failed = 0
        self._keys: dict[str, str] = {}  # service id → a sending key (the template sequence's)
        # one client for its speed (a new client per request costs milliseconds, long enough to
        # hide a lagging process); ``Connection: close`` puts each request on a new connection
        self.http = httpx.Client(timeout=30)

    def call(self, step: str, method: str, path: str, expect: int, key: str | None = None, **kw) -> dict | None:
        """One request on a fresh connection; a status other than ``expect`` is a failure."""
        url = self.urls[next(self._turn) % len(self.urls)]
        headers = {"Api-Key": key} if key else ADMIN
        r = self.http.request(method, url + path, headers={**headers, "Connection": "close"}, **kw)
        self.requests += 1
        if r.status_code != expect:
            self.failures.append(f"{step}: {r.status_code} {r.text[:160]}")
            return None
        return r.json() if r.content else {}

    def check(self, step: str, ok: bool, detail: str) -> None:
        if not ok:
            self.failures.append(f"{step}: {detail}")

    def key_then_send(self, i: int) -> None:
        """Create a service, create its key, send with the key at once, list the keys."""
        svc = self.call("create service", "POST", "/api/email/services", 201, json={"name": f"s{i}"})
        key = svc and self.call("create key", "POST", f"/api/email/services/{svc['id']}/api-keys", 201,
                                json={"name": "k"})
        if not key:
            return
        self.call("send with the new key", "POST", f"/api/email/services/{svc['id']}/send", 200, key=key["key"],
                  json={"from": "a@example.org", "to": ["ann@example.com"], "subject": "s", "text": "t"})
        keys = self.call("list keys", "GET", f"/api/email/services/{svc['id']}/api-keys", 200)
        self.check("list keys", keys is not None and [k["id"] for k in keys["data"]] == [key["id"]], str(keys))

    def domain_then_production(self, i: int) -> None:
        """Add a domain, verify it, switch to production, send from the domain, read the service."""
        svc = self.call("create service", "POST", "/api/email/services", 201, json={"name": f"d{i}"})
        key = svc and self.call("create key", "POST", f"/api/email/services/{svc['id']}/api-keys", 201,
                                json={"name": "k"})
        domain = f"ryw{i}.test"
        d = key and self.call("add domain", "POST", f"/api/email/services/{svc['id']}/domains", 201,
                              json={"domain": domain})
        if not d:
            return
        for rec in d["records"]:
            if rec["type"] == "TXT":
                self.dns.txt(rec["name"], rec.get("value_strings") or rec["value"])
        v = self.call("verify", "POST", f"/api/email/services/{svc['id']}/domains/{d['id']}/verify", 200)
        self.check("verify", v is not None and v["verified"], str(v))
        self.call("production", "PATCH", f"/api/email/services/{svc['id']}", 200, json={"mode": "production"})
        self.call("send from the domain", "POST", "/emails", 200, key=key["key"],
                  json={"from": f"a@{domain}", "to": ["bob@example.com"], "subject": "s", "text": "t"})
        got = self.call("read service", "GET", f"/api/email/services/{svc['id']}", 200)
        self.check("read service", got is not None and got["mode"] == "production", str(got))

    def suppression_then_list(self, i: int, service_id: str) -> None:
        """Add a suppression, list the service's suppressions, read the entry."""
        email = f"gone{i}@example.com"
        base = f"/api/email/services/{service_id}/suppressions"
        if self.call("add suppression", "POST", base, 201, json={"email": email}) is None:
            return
        listed = self.call("list suppressions", "GET", base, 200, params={"limit": 500})
        self.check("list suppressions", listed is not None and email in {s["email"] for s in listed["data"]},
                   f"{email} not listed")
        self.call("read suppression", "GET", f"{base}/{email}", 200)

    def template_then_send(self, i: int, service_id: str) -> None:
        """Create a template, publish it (by alias), change the draft and publish again, read
        it (two versions, nothing unpublished), send with it by alias."""
        if service_id not in self._keys:
            key = self.call("create key", "POST", f"/api/email/services/{service_id}/api-keys", 201, json={"name": "t"})
            if key is None:
                return
            self._keys[service_id] = key["key"]
        base, alias = f"/api/email/services/{service_id}/templates", f"t{i}"
        if self.call("create template", "POST", base, 201, json={
                "name": alias, "alias": alias, "html": "<p>{{{N}}}</p>", "variables": [{"key": "N", "type": "string"}]}) is None:
            return
        self.call("publish", "POST", f"{base}/{alias}/publish", 200)
        self.call("edit the draft", "PATCH", f"{base}/{alias}", 200, json={"html": "<p>v2 {{{N}}}</p>"})
        self.call("publish again", "POST", f"{base}/{alias}/publish", 200)
        got = self.call("read template", "GET", f"{base}/{alias}", 200)
        self.check("read template", got is not None and len(got["versions"]) == 2 and not got["has_unpublished_versions"]
                   and got["html"] == "<p>v2 {{{N}}}</p>", str(got)[:300])
        self.call("send with the template", "POST", f"/api/email/services/{service_id}/send", 200,
                  key=self._keys[service_id], json={"from": "a@example.org", "to": ["ann@example.com"],
                                                    "template": {"id": alias, "variables": {"N": "x"}}})

    def run(self, n: int, suppression_service: str) -> None:
        for i in range(n):
            before = len(self.failures)
            [self.key_then_send, self.domain_then_production,
             lambda j: self.suppression_then_list(j, suppression_service),
             lambda j: self.template_then_send(j, suppression_service)][i % 4](i)
            self.sequences_failed += len(self.failures) > before

    def summary(self) -> str:
        return (f"{self.sequences_failed} sequences and {len(self.failures)} of {self.requests} requests failed: "
                f"{self.failures[:10]}")


class SendLoad:
    """Background threads sending through the API, each on its own keep-alive client, until stopped."""

    def __init__(self, url: str, key: str, sender: str, clients: int = 4):
        self.url, self.key, self.sender = url, key, sender
        self.stop_event = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop_event.is_set():
                r = c.post("/emails", headers={"Api-Key": self.key},
                           json={"from": self.sender, "to": [f"load{self.sent % 50}@example.com"], "subject": "load",
                                 "text": "x"})
                self.sent += r.status_code == 200

    def __enter__(self) -> "SendLoad":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
