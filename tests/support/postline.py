"""Run Postline as a real process (``postline <role>``) and talk to it over HTTP."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.broker import free_port
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "pl_adm_test_token_0123456789abcdefghijklmnop"


def distinct_ports(n: int, taken: set[int]) -> list[int]:
    """``n`` free ports, none in ``taken`` nor equal to each other: the kernel may hand the same
    free port out twice in a row, and one process binding it twice fails at start-up."""
    out: list[int] = []
    while len(out) < n:
        port = free_port()
        if port not in taken and port not in out:
            out.append(port)
    return out


class PostlineProcess:
    def __init__(self, data_dir: Path, role: str = "all", env: dict | None = None, port: int | None = None,
                 preexec_fn=None):
        self.data_dir, self.role, self.preexec_fn = Path(data_dir), role, preexec_fn
        self.port = port or free_port()
        inbound, submission = distinct_ports(2, taken={self.port})
        self.env = {**os.environ, "POSTLINE_DATA_DIR": str(data_dir), "POSTLINE_HTTP_PORT": str(self.port),
                    "POSTLINE_ADMIN_TOKEN": ADMIN_TOKEN, "POSTLINE_SECRET_KEY": "test-master-key",
                    "POSTLINE_INBOUND_SMTP_PORT": str(inbound),
                    "POSTLINE_SUBMISSION_PORT": str(submission), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{role}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "PostlineProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", self.role], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn)
        if wait and self.role in ("all", "api"):
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postline {self.role} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"postline {self.role} not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> int:
        return stop_process(self.proc, timeout) if self.proc else 0

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Api:
    """A thin HTTP client for tests; admin calls use the workspace token."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN):
        self.http = httpx.Client(base_url=url, timeout=30)
        self.token = token

    def admin(self, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kw)

    def create_service(self, name: str = "app") -> str:
        r = self.admin("POST", "/api/email/services", json={"name": name})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def create_key(self, service_id: str) -> str:
        r = self.admin("POST", f"/api/email/services/{service_id}/api-keys", json={"name": "test"})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def send(self, key: str, body: dict, headers: dict | None = None) -> httpx.Response:
        return self.http.post("/emails", json=body, headers={"Api-Key": key, **(headers or {})})

    def verify_sandbox(self, service_id: str, email: str, read_mail) -> None:
        """Add a sandbox recipient and follow the link from the mail ``read_mail(email)`` returns."""
        r = self.admin("POST", f"/api/email/services/{service_id}/sandbox-emails", json={"email": email})
        assert r.status_code == 201, r.text
        raw = read_mail(email)
        link = re.search(rb"(http://\S+?token=[A-Za-z0-9_-]+)", raw).group(1).decode()
        path = link.split("127.0.0.1", 1)[1].split("/", 1)[1]
        r = self.http.get("/" + path)
        assert r.status_code == 200, r.text

    def wait_status(self, key: str, email_id: str, rcpt: str, status: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        body = {}
        while time.monotonic() < deadline:
            r = self.http.get(f"/emails/{email_id}", headers={"Api-Key": key})
            if r.status_code == 200:
                body = r.json()
                if body["recipients"].get(rcpt, {}).get("status") == status:
                    return body
            time.sleep(0.2)
        raise AssertionError(f"{rcpt} of {email_id} never reached {status}: {body}")


def mail_text(raw: bytes) -> bytes:
    """The decoded text/plain body of a raw message (links survive quoted-printable)."""
    from email import message_from_bytes, policy

    msg = message_from_bytes(raw, policy=policy.default)
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content().encode() if part else raw


def inbox_reader(api: Api, timeout: float = 20):
    """``read_mail`` for the dev inbox: the newest mail to an address, decoded."""
    def read(address: str) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = api.admin("GET", "/dev/inbox", params={"to": address}).json()["data"]
            if items:
                return mail_text(api.admin("GET", f"/dev/inbox/{items[0]['id']}.eml").content)
            time.sleep(0.1)
        raise AssertionError(f"no mail to {address} in the dev inbox")
    return read


def wait_verified(api: Api, sid: str, timeout: float = 30) -> None:
    """The API's control state follows the control topic: under load the verification may
    take a moment to come back from Kafka."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = api.admin("GET", f"/api/email/services/{sid}/sandbox-emails").json()["data"]
        if rows and rows[0]["verified"]:
            return
        time.sleep(0.2)
    raise AssertionError("the sandbox recipient never showed as verified")


@contextlib.contextmanager
def kafka_api_and_relay(tmp_path: Path, tansu, sink):
    """``postline api`` and ``postline relay`` as separate processes on the tansu broker,
    delivering to ``sink``; yields ``(api, service id, key)`` of a sandbox service whose
    recipient ann@example.com is verified."""
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "2000",
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address}
    api_proc = PostlineProcess(tmp_path / "api", role="api", env=env).start()
    relay = PostlineProcess(tmp_path / "relay", role="relay", env=env).start()
    try:
        api = Api(api_proc.url)
        sid, key = sandbox_service(api, sink)
        yield api, sid, key
    finally:
        relay.stop()
        api_proc.stop()


def sink_reader(sink, timeout: float = 20):
    """``read_mail`` for an SMTP sink: the first verification mail to an address that arrived
    after this reader was made (so each verification reads its own link)."""
    before = {id(r) for r in sink.received}

    def read(address: str) -> bytes:
        got = sink.wait_for(lambda r: id(r) not in before and address in r.rcpt_tos and b"Confirm" in r.data, timeout)
        return mail_text(got[0].data)
    return read


def sandbox_service(api: Api, sink, recipient: str = "ann@example.com") -> tuple[str, str]:
    """``(service id, key)`` of a new sandbox service whose ``recipient`` is verified through
    the verification mail that reached ``sink``, as the API's control state shows it."""
    sid = api.create_service()
    key = api.create_key(sid)
    api.verify_sandbox(sid, recipient, sink_reader(sink, timeout=60))
    wait_verified(api, sid)
    return sid, key


def post_batches(url: str, key: str, n: int, subject: str) -> list[str]:
    """``n`` sends from the verified acme.test (to u0@example.com, u1@…) through
    ``POST /emails/batch``, 100 a call; the ids, in order."""
    ids: list[str] = []
    for batch in range(0, n, 100):
        items = [{"from": "hello@acme.test", "to": f"u{i}@example.com", "subject": subject, "text": "x"}
                 for i in range(batch, min(batch + 100, n))]
        r = httpx.post(f"{url}/emails/batch", json=items, headers={"Api-Key": key}, timeout=60)
        assert r.status_code == 200, r.text
        ids += [item["id"] for item in r.json()["data"]]
    return ids


def production_service(api: Api, dns, domain: str = "acme.test", name: str = "prod") -> tuple[str, str]:
    """A service in production mode with ``domain`` published in ``dns`` and verified."""
    sid = api.create_service(name)
    key = api.create_key(sid)
    d = api.admin("POST", f"/api/email/services/{sid}/domains", json={"domain": domain}).json()
    for rec in d["records"]:
        if rec["type"] == "TXT":
            dns.txt(rec["name"], rec.get("value_strings") or rec["value"])
    assert api.admin("POST", f"/api/email/services/{sid}/domains/{d['id']}/verify").json()["verified"]
    assert api.admin("PATCH", f"/api/email/services/{sid}", json={"mode": "production"}).status_code == 200
    return sid, key


def dkim_results(raw: bytes, dns_address: str) -> list[bool]:
    """Verify every DKIM-Signature of ``raw`` with dkimpy against the test DNS server."""
    import dkim
    import dns.resolver

    ip, _, port = dns_address.rpartition(":")
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port = [ip], int(port)

    def dnsfunc(name, timeout=5):
        try:
            return b"".join(b"".join(r.strings) for r in res.resolve(name.decode().rstrip("."), "TXT"))
        except Exception:
            return None

    d = dkim.DKIM(raw)
    count = raw.split(b"\r\n\r\n", 1)[0].lower().count(b"dkim-signature:")
    return [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(count)]


def deliveries(sink) -> list[tuple[str, tuple, float]]:
    with sink.lock:
        return [(m.data.split(b"X-Postline-Id: ", 1)[1][:36].decode(), tuple(m.rcpt_tos), m.at) for m in sink.received]


def api_and_two_relays(tmp_path, tansu, sink, dns) -> dict[str, PostlineProcess]:
    """An API and two relays (not started) over tansu, delivering to ``sink``."""
    env = {"POSTLINE_KAFKA_BOOTSTRAP": tansu.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "3000",
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address}
    return {name: PostlineProcess(tmp_path / name, role=name.split("-")[0], env=env) for name in ("api", "relay-a", "relay-b")}
