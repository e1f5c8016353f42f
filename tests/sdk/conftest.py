"""One running Postline (``postline all``, what ``make run`` starts) for the SDK tests:
a production service with a verified domain (acme.test, published on a real DNS server)
delivering to a real SMTP sink, so a test reads the mail the SDK's call produced."""
from __future__ import annotations

import time

import pytest

from tests.support.dns_server import DnsServer
from tests.support.node_sdk import node_caller
from tests.support.postline import Api, PostlineProcess, production_service
from tests.support.receiver import Receiver
from tests.support.smtp_sink import SmtpSink


class SdkWorld:
    def __init__(self, proc: PostlineProcess, api: Api, sink: SmtpSink, service_id: str, key: str, hooks: Receiver,
                 dns: DnsServer, full_key: str):
        self.proc, self.api, self.sink, self.service_id, self.key = proc, api, sink, service_id, key
        self.hooks = hooks  # a real webhook endpoint subscribed to delivered, scheduled and canceled
        self.dns = dns  # the DNS server domain verification reads (publish records with dns.txt)
        self.full_key = full_key  # a full_access key of the service (Resend's management paths)

    def webhook(self, email_id: str, kind: str, timeout: float = 30) -> dict:
        """The ``kind`` webhook body about ``email_id`` the endpoint received."""
        import json

        def about(r):
            body = json.loads(r["body"])
            return body["type"] == kind and body["data"]["email_id"] == email_id
        return json.loads(self.hooks.wait(1, timeout, about)[0]["body"])

    @property
    def url(self) -> str:
        return self.proc.url

    def mail_for(self, email_id: str, timeout: float = 30):
        """The message with Postline id ``email_id`` as the sink received it."""
        return self.sink.wait_for(lambda m: f"<{email_id}@".encode() in m.data, timeout)[0]

    def record(self, email_id: str) -> dict:
        return self.api.http.get(f"/emails/{email_id}", headers={"Api-Key": self.key}).json()

    def wait_record(self, email_id: str, check, timeout: float = 30) -> dict:
        deadline, body = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            body = self.record(email_id)
            if check(body):
                return body
            time.sleep(0.2)
        raise AssertionError(f"{email_id} never reached the expected state: {body}")

    def tag_count(self, tag: str, kind: str = "sent") -> int:
        r = self.api.admin("GET", f"/api/email/services/{self.service_id}/stats", params={"period": "1h", "tag": tag})
        return r.json()["totals"][kind]


@pytest.fixture(scope="package")  # stopped once tests/sdk is done
def sdk_world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdk")
    sink, dns, hooks = SmtpSink().start(), DnsServer().start(), Receiver()
    proc = PostlineProcess(tmp / "data", env={"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
                                              "POSTLINE_DNS_SERVER": dns.address,
                                              "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true"}).start()
    try:
        api = Api(proc.url)
        sid, key = production_service(api, dns)
        r = api.admin("POST", f"/api/email/services/{sid}/webhooks",
                      json={"url": hooks.url, "events": ["delivered", "scheduled", "canceled"]})
        assert r.status_code == 201, r.text
        r = api.admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "manager", "permission": "full_access"})
        assert r.status_code == 201, r.text
        yield SdkWorld(proc, api, sink, sid, key, hooks, dns, r.json()["key"])
    finally:
        proc.stop()
        sink.stop()
        dns.stop()
        hooks.stop()


@pytest.fixture
def node(sdk_world):
    """Resend's Node SDK (tests/sdk/node/run.mjs) against this Postline, with the service's sending key by default."""
    return node_caller(sdk_world.url, "run.mjs", sdk_world.key)
