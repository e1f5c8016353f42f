"""SMTP submission (issue 18, docs/submission.md) against a running `postline all` that delivers to an
SMTP sink, with clients nobody here wrote: Python's smtplib, Debian's swaks, and (issue 28) the
README's framework settings as pasted — Django's SMTP backend, Rails's through the mail gem,
Laravel's through Symfony Mailer — and nodemailer with its defaults: every one verifying the
listener's certificate against the data dir's local CA, trusted as the README says."""
from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import ROOT, Api, PostlineProcess, dkim_results, production_service, sink_reader
from tests.support.smtp_sink import SmtpSink
from tests.support.waiting import caught_up

ANN, BOB, CAROL, EVE = "ann@example.com", "bob@example.com", "carol@example.com", "eve@example.com"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One running Postline with submission on a free port, a sink, DNS; a production service
    on a verified domain and a sandbox service with one verified recipient (ann)."""
    tmp = tmp_path_factory.mktemp("submission")
    sink, dns = SmtpSink().start(), DnsServer().start()
    port = free_port()
    # the README's default data dir name: its `$PWD/.postline/postline-ca.pem` is this one with PWD=tmp
    proc = PostlineProcess(tmp / ".postline", env={"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
                                              "POSTLINE_DNS_SERVER": dns.address,
                                              "POSTLINE_SUBMISSION_PORT": str(port)}).start()
    api = Api(proc.url)
    prod = production_service(api, dns)
    sandbox_sid = api.create_service("sandboxed")
    sandbox = (sandbox_sid, api.create_key(sandbox_sid))
    api.verify_sandbox(sandbox_sid, ANN, sink_reader(sink))
    yield {"api": api, "sink": sink, "dns": dns, "proc": proc, "port": port, "prod": prod, "sandbox": sandbox,
           "ca": tmp / ".postline" / "postline-ca.pem", "pwd": tmp}
    proc.stop()
    sink.stop()
    dns.stop()


def client(world, tls: bool = True) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", world["port"], timeout=30)
    s.ehlo("client.test")
    if tls:
        s.starttls(context=ssl.create_default_context(cafile=world["ca"]))  # verified: name and issuer
        s.ehlo("client.test")
    return s


def login(s: smtplib.SMTP, key: str, mechanism: str = "PLAIN") -> tuple[int, bytes]:
    s.user, s.password = "anything", key
    return s.auth(mechanism, s.auth_plain if mechanism == "PLAIN" else s.auth_login)


def transaction(s: smtplib.SMTP, rcpts: list[str], data: bytes, mail_from: str = "app@acme.test"):
    """MAIL, RCPT…, DATA; returns the DATA reply (code, text)."""
    assert s.mail(mail_from)[0] == 250
    for r in rcpts:
        assert s.rcpt(r)[0] == 250
    return s.data(data)


def email_id(reply: tuple[int, bytes]) -> str:
    code, text = reply
    assert code == 250 and text.startswith(b"2.0.0 OK "), reply
    return text.split()[-1].decode()


def at_sink(world, email_id: str, n: int = 1) -> list:
    """The SMTP transactions of one message (one per destination domain); ``world`` or a sink."""
    deadline = time.monotonic() + 30
    got = []
    while time.monotonic() < deadline:
        got = [m for m in (world if isinstance(world, SmtpSink) else world["sink"]).received if f"X-Postline-Id: {email_id}\r\n".encode() in m.data]
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{len(got)} of {n} transactions of {email_id} at the sink")


BODY = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Gr\u00fc\u00dfe,\r\n.leading dot\r\n\r\n-- \r\nAcme\r\n").encode()


def test_smtplib_starttls_auth_plain_delivers_signed_with_bcc_hidden(world):
    head = (b"From: Acme <hello@acme.test>\r\nTo: Bob <bob@example.com>\r\nCc: carol@example.com\r\n"
            b"Bcc: eve@example.com\r\nSubject: Welcome\r\nX-Postline-Tags: welcome, smtp\r\nMIME-Version: 1.0\r\n")
    with client(world) as s:
        assert b"AUTH" in s.ehlo_resp and b"ENHANCEDSTATUSCODES" in s.ehlo_resp and b"PIPELINING" in s.ehlo_resp
        assert login(s, world["prod"][1], "PLAIN")[0] == 235
        eid = email_id(transaction(s, [BOB, CAROL, EVE], head + b"\r\n" + BODY))
    got = at_sink(world, eid)
    assert sorted(r for m in got for r in m.rcpt_tos) == [BOB, CAROL, EVE]  # one transaction: one domain
    for m in got:
        assert dkim_results(m.data, world["dns"].address) == [True, True]
        assert m.data.endswith(b"\r\n\r\n" + BODY)  # the client's body, byte for byte
        header = m.data.split(b"\r\n\r\n", 1)[0]
        assert b"eve@" not in header and b"Bcc" not in header and b"X-Postline-Tags" not in header
        assert f"Message-ID: <{eid}@acme.test>".encode() in header and b"\r\nDate: " in header
    r = world["api"].http.get(f"/emails/{eid}", headers={"Api-Key": world["prod"][1]})
    assert r.status_code == 200, r.text
    record = r.json()
    assert (record["to"], record["cc"], record["bcc"]) == ([BOB], [CAROL], [EVE])
    assert record["tags"] == ["welcome", "smtp"] and record["subject"] == "Welcome" and record["mode"] == "production"


def test_smtplib_auth_login_keeps_the_clients_message_id_and_date(world):
    raw = (b"Message-ID: <own-1@acme.test>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nFrom: hello@acme.test\r\n"
           b"To: bob@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" + b"\r\n" + BODY)
    with client(world) as s:
        assert login(s, world["prod"][1], "LOGIN")[0] == 235
        eid = email_id(transaction(s, [BOB], raw))
    (m,) = at_sink(world, eid)
    # after the signatures and our id comes the client's message, every byte of it
    assert m.data.endswith(f"\r\nX-Postline-Id: {eid}\r\n".encode() + raw)
    assert dkim_results(m.data, world["dns"].address) == [True, True]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks (Debian package) not installed: make test-deps")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_delivers(world, mechanism):
    run = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(world["port"]), "--tls", "--auth", mechanism,
         "--auth-user", "app", "--auth-password", world["prod"][1], "--from", "app@acme.test",
         "--to", BOB, "--h-From", "Acme <hello@acme.test>", "--h-Subject", f"swaks {mechanism}",
         "--body", "sent by swaks"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    eid = next(line.split()[-1] for line in run.stdout.splitlines() if "<~  250 2.0.0 OK " in line)
    (m,) = at_sink(world, eid)
    assert m.rcpt_tos == [BOB] and f"Subject: swaks {mechanism}".encode() in m.data
    assert dkim_results(m.data, world["dns"].address) == [True, True]


def test_bad_key_is_535(world):
    with client(world) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            login(s, "rs_eml_" + "x" * 32)
    assert exc.value.smtp_code == 535 and exc.value.smtp_error.startswith(b"5.7.8")


def test_auth_attempts_per_connection_are_limited(world):
    with client(world) as s:
        for _ in range(5):
            assert s.docmd("AUTH", "PLAIN " + "AHgAeA==")[0] == 535  # \0x\0x
        assert s.docmd("AUTH", "PLAIN " + "AHgAeA==")[0] == 421


def test_a_key_revoked_during_a_session_stops_the_next_message(world):
    api, sid = world["api"], world["prod"][0]
    created = api.admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "short-lived"}).json()
    with client(world) as s:
        assert login(s, created["key"])[0] == 235
        assert api.admin("DELETE", f"/api/email/services/{sid}/api-keys/{created['id']}").status_code == 204
        code, text = s.mail("app@acme.test")
    assert code == 535 and text.startswith(b"5.7.8 "), (code, text)


def test_mail_before_auth_is_refused(world):
    with client(world) as s:
        code, text = s.mail("app@acme.test")
    assert (code, text) == (530, b"5.7.0 Authentication required")


def test_51st_recipient_is_452_4_5_3(world):
    with client(world) as s:
        login(s, world["prod"][1])
        s.mail("app@acme.test")
        for i in range(50):
            assert s.rcpt(f"r{i}@example.com")[0] == 250
        code, text = s.rcpt("r50@example.com")
    assert code == 452 and text.startswith(b"4.5.3 ")


def test_oversize_is_552_5_3_4(world):
    from services.api.submission.server import MAX_DATA_BYTES

    big = b"From: hello@acme.test\r\nTo: bob@example.com\r\n\r\n" + (b"x" * 998 + b"\r\n") * (MAX_DATA_BYTES // 1000 + 10)
    with client(world) as s:
        login(s, world["prod"][1])
        # declared in MAIL (SIZE=): refused before the data is sent
        code, text = s.mail("app@acme.test", [f"SIZE={len(big)}"])
        assert code == 552 and text.startswith(b"5.3.4 "), (code, text)
        s.rset()
        code, text = transaction(s, [BOB], big)  # not declared: refused at the end of DATA
    assert code == 552 and text.startswith(b"5.3.4 "), (code, text)


def test_sandbox_unverified_recipient_is_550_with_the_apis_message(world):
    sid, key = world["sandbox"]
    api_error = world["api"].send(key, {"from": "app@acme.test", "to": BOB, "subject": "s", "text": "x"}).json()["error"]
    with client(world) as s:
        login(s, key)
        code, text = transaction(s, [BOB], b"From: app@acme.test\r\nTo: bob@example.com\r\nSubject: s\r\n\r\nx\r\n")
    assert code == 550 and text.decode() == f"5.7.1 {api_error}"


def test_sandbox_from_is_rewritten_like_the_api(world):
    sid, key = world["sandbox"]
    with client(world) as s:
        login(s, key)
        eid = email_id(transaction(s, [ANN], b"From: App <app@acme.test>\r\nTo: ann@example.com\r\nSubject: s\r\n\r\nx\r\n"))
    (m,) = at_sink(world, eid)
    assert b"From: App <sandbox@postline.localhost>\r\nReply-To: App <app@acme.test>\r\n" in m.data


def test_rate_limit_is_452_4_7_1(world):
    api = world["api"]
    sid, key = production_service(api, world["dns"], domain="limited.test", name="limited")
    assert api.admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": 1}}).status_code == 200
    raw = b"From: hello@limited.test\r\nTo: bob@example.com\r\nSubject: s\r\n\r\nx\r\n"
    with client(world) as s:
        login(s, key)
        # three sends cross at most one minute boundary, so at least one meets a full window
        got = [transaction(s, [BOB], raw) for _ in range(3)]
    assert got[0][0] == 250, got
    refused = [r for r in got if r[0] != 250]
    assert refused and all(code == 452 and text.startswith(b"4.7.1 rate limit reached (minute: 1)")
                           for code, text in refused), got


def raw_data(s: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """DATA with ``data`` sent as is (smtplib.data would turn bare LFs into CRLFs)."""
    assert s.putcmd("data") is None and s.getreply()[0] == 354
    s.send(data)
    return s.getreply()


@pytest.mark.parametrize("vector", [
    b"\n.\nMAIL FROM:<app@acme.test>\r\nRCPT TO:<eve@example.com>\r\nDATA\r\nFrom: hello@acme.test\r\nSubject: SMUGGLED\r\n\r\nx\r\n",
    b"\r\n.\nMAIL FROM:<app@acme.test>\r\nRCPT TO:<eve@example.com>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n",
    b"\n.\r\nMAIL FROM:<app@acme.test>\r\nRCPT TO:<eve@example.com>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n",
    b"\nBcc: eve@example.com\r\nX-Injected: SMUGGLED\r\n",
], ids=["lf-dot-lf", "crlf-dot-lf", "lf-dot-crlf", "bare-lf-header"])
def test_smuggling_vectors_never_make_a_second_message_or_header(world, vector):
    data = b"From: hello@acme.test\r\nTo: bob@example.com\r\nSubject: outer\r\n\r\nfirst" + vector + b"\r\n.\r\n"
    with client(world) as s:
        login(s, world["prod"][1])
        s.mail("app@acme.test")
        s.rcpt(BOB)
        code, text = raw_data(s, data)
        assert s.noop()[0] == 250  # the session is still in step: nothing after the dot was a command
    assert code == 550 and text.startswith(b"5.6.0 "), (code, text)
    caught_up(world["api"], world["prod"][1], world["sink"])
    assert not [m for m in world["sink"].received if b"SMUGGLED" in m.data or EVE in m.rcpt_tos and b"outer" in m.data]


@pytest.mark.parametrize("head, reply", [
    (b"From: hello@acme.test\r\nTo: bob@example.com\r\nSubject: =?utf-8?q?x=0D=0ABcc:_eve@example.com?=\r\n",
     "5.7.1 subject: must not contain line breaks or NUL"),
    (b"From: hello@acme.test\r\nTo: bob@example.com\r\nSubject: a\r\nSubject: b\r\n", "5.7.1 headers: more than one Subject header"),
    (b"From: hello@acme.test\r\nFrom: eve@example.com\r\nTo: bob@example.com\r\n", "5.7.1 headers: more than one From header"),
    (b"From: hello@acme.test\r\nTo: bob@example.com\r\nDKIM-Signature: v=1; d=acme.test\r\n",
     "5.7.1 headers: DKIM-Signature is a reserved header"),
])
def test_header_injection_is_refused(world, head, reply):
    with client(world) as s:
        login(s, world["prod"][1])
        code, text = transaction(s, [BOB], head + b"\r\nINJECTION-TEST\r\n")
    assert (code, text.decode()) == (550, reply)
    caught_up(world["api"], world["prod"][1], world["sink"])
    assert not [m for m in world["sink"].received if b"INJECTION-TEST" in m.data]


def test_auth_is_offered_without_tls_to_a_loopback_client(world):
    with client(world, tls=False) as s:
        assert s.has_extn("auth") and s.has_extn("starttls")
        assert login(s, world["prod"][1])[0] == 235


def test_certificate_comes_from_the_data_dirs_ca_and_names_loopback(world):
    from cryptography import x509

    data_dir = world["proc"].data_dir
    assert (data_dir / "postline-ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "submission-tls.pem").stat().st_mode & 0o777 == 0o600
    with client(world) as s:  # verified against the CA: chain and the name 127.0.0.1
        served = x509.load_der_x509_certificate(s.sock.getpeercert(binary_form=True))
    served.verify_directly_issued_by(x509.load_pem_x509_certificate(world["ca"].read_bytes()))
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "postline.localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    # the banner says where the CA is and how to trust it
    banner = world["proc"].output()
    assert f"SSL_CERT_FILE={world['ca']}" in banner and f"NODE_EXTRA_CA_CERTS={world['ca']}" in banner


def readme_smtp_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Send over SMTP", 1)[1].split("\n## ", 1)[0]


def test_django_smtp_backend_with_the_readmes_settings(world, monkeypatch):
    """Django's real SMTP backend, configured with the README's block as pasted (the key and
    the test's port substituted), in an environment set up by the README's exports."""
    import re

    section = readme_smtp_section()
    for name, value in re.findall(r"^export (\w+)=(\S+)", section, flags=re.M):
        monkeypatch.setenv(name, value.replace("$PWD", str(world["pwd"])))
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    block = block.replace('"rs_eml_..."', repr(world["prod"][1])).replace("EMAIL_PORT = 1587", f"EMAIL_PORT = {world['port']}")
    readme_settings: dict = {}
    exec(block, {}, readme_settings)
    assert readme_settings["EMAIL_USE_TLS"] is True and readme_settings["EMAIL_HOST"] == "127.0.0.1"

    from django.conf import settings
    from django.core.mail import send_mail

    if not settings.configured:
        settings.configure(**readme_settings)
    for name, value in readme_settings.items():  # also when another test configured Django first
        setattr(settings, name, value)
    assert send_mail("Hello from Django", "Sent by django.core.mail.", "Acme <hello@acme.test>", [BOB]) == 1
    monkeypatch.delenv("SSL_CERT_FILE")  # without the README's export, Django's default verification refuses
    with pytest.raises(ssl.SSLCertVerificationError):
        send_mail("Not sent", "x", "Acme <hello@acme.test>", [BOB])
    got = world["sink"].wait_for(lambda m: b"Subject: Hello from Django" in m.data, 30)
    assert got[0].rcpt_tos == [BOB] and dkim_results(got[0].data, world["dns"].address) == [True, True]


def nodemailer(world, env: dict) -> subprocess.CompletedProcess:
    node_dir = ROOT / "tests" / "sdk" / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / "nodemailer").is_dir():
        pytest.fail("node or the pinned nodemailer package is missing: run `make test-deps`")
    args = {"host": "127.0.0.1", "port": world["port"], "user": "postline", "pass": world["prod"][1],
            "message": {"from": "Acme <hello@acme.test>", "to": BOB, "subject": "Hello from nodemailer",
                        "text": "Sent by nodemailer."}}
    clean = {k: v for k, v in os.environ.items() if k not in ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE")}
    return subprocess.run(["node", "nodemailer.mjs", json.dumps(args)], cwd=node_dir, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_nodemailer_defaults_with_the_ca_trusted(world):
    run = nodemailer(world, {"NODE_EXTRA_CA_CERTS": str(world["ca"])})
    assert run.returncode == 0, run.stderr
    eid = json_line(run.stdout)["response"].split()[-1]
    (m,) = at_sink(world, eid)
    assert b"Subject: Hello from nodemailer" in m.data and dkim_results(m.data, world["dns"].address) == [True, True]


def test_nodemailer_verifies_the_certificate(world):
    """Without the CA nodemailer refuses the listener: the test above passes because it verifies."""
    run = nodemailer(world, {})
    assert run.returncode != 0 and "certificate" in run.stderr, run.stdout + run.stderr


CLIENTS = ROOT / "tests" / "data" / "clients"


def readme_line(prefix: str) -> str:
    """The README's one-line settings for a framework (``Rails:``, ``Laravel:``), between backticks."""
    line = next(line for line in readme_smtp_section().splitlines() if line.startswith(prefix))
    return line.split("`", 2)[1]


def trusting_env(world) -> dict:
    """The environment after the README's `export SSL_CERT_FILE=$PWD/.postline/postline-ca.pem`."""
    export = re.search(r"^export SSL_CERT_FILE=(\S+)", readme_smtp_section(), flags=re.M).group(1)
    return {**os.environ, "SSL_CERT_FILE": export.replace("$PWD", str(world["pwd"]))}


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby and ruby-mail (Debian) not installed: make test-deps")
def test_rails_smtp_settings_from_the_readme(world):
    """The README's Rails ``smtp_settings`` hash, as Action Mailer hands it to the mail gem."""
    settings = readme_line("Rails:").split(" = ", 1)[1]
    settings = settings.replace('"rs_eml_..."', json.dumps(world["prod"][1])).replace("port: 1587", f"port: {world['port']}")
    run = subprocess.run(["ruby", str(CLIENTS / "rails_mail.rb"), settings, "Hello from Rails"],
                         env=trusting_env(world), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "delivered", run.stdout + run.stderr
    got = world["sink"].wait_for(lambda m: b"Subject: Hello from Rails" in m.data, 30)
    assert got[0].rcpt_tos == [BOB] and dkim_results(got[0].data, world["dns"].address) == [True, True]


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli and php-symfony-mailer (Debian) not installed: make test-deps")
def test_laravel_mail_settings_from_the_readme(world):
    """The README's Laravel ``MAIL_*`` line, built into Symfony Mailer as Laravel does."""
    mail_env = dict(pair.split("=", 1) for pair in readme_line("Laravel:").split())
    assert mail_env["MAIL_MAILER"] == "smtp"
    mail_env.update(MAIL_PORT=str(world["port"]), MAIL_PASSWORD=world["prod"][1])
    run = subprocess.run(["php", str(CLIENTS / "laravel_mailer.php"), "Hello from Laravel"],
                         env={**trusting_env(world), **mail_env}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "delivered", run.stdout + run.stderr
    got = world["sink"].wait_for(lambda m: b"Subject: Hello from Laravel" in m.data, 30)
    assert got[0].rcpt_tos == [BOB] and dkim_results(got[0].data, world["dns"].address) == [True, True]


def json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_250_means_the_request_is_on_the_log(tmp_path):
    """The api role alone answers 250 and is killed at once; a relay started afterwards on the
    same data dir delivers the message: the log is the only place it can come from."""
    sink, dns, port = SmtpSink().start(), DnsServer().start(), free_port()
    env = {"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address, "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_SUBMISSION_PORT": str(port)}
    api_proc = PostlineProcess(tmp_path / "data", role="api", env=env).start()
    relay = None
    try:
        _, key = production_service(Api(api_proc.url), dns)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.test")
            assert login(s, key)[0] == 235
            eid = email_id(transaction(s, [BOB], b"From: hello@acme.test\r\nTo: bob@example.com\r\nSubject: durable\r\n\r\nx\r\n"))
            api_proc.kill()
        assert not sink.received
        relay = PostlineProcess(tmp_path / "data", role="relay", env=env).start()
        (m,) = at_sink(sink, eid)
        assert dkim_results(m.data, dns.address) == [True, True]
    finally:
        for p in (api_proc, relay):
            if p is not None:
                p.stop()
        sink.stop()
        dns.stop()


def test_x_postline_require_tls_defers_rather_than_use_a_smarthost_without_tls(world):
    """The send's ``require_tls`` through SMTP: this smarthost is configured without TLS, so the
    message waits (deferred, the reason says why) instead of leaving in clear."""
    head = b"From: Acme <hello@acme.test>\r\nTo: bob@example.com\r\nSubject: Secret\r\nX-Postline-Require-TLS: yes\r\n"
    with client(world) as s:
        assert login(s, world["prod"][1])[0] == 235
        eid = email_id(transaction(s, [BOB], head + b"\r\n" + BODY))
        bad = s.mail("app@acme.test") and s.rcpt(BOB) and s.data(head.replace(b"yes", b"maybe") + b"\r\n" + BODY)
        assert bad[0] == 550 and b"X-Postline-Require-TLS must be true or false" in bad[1]
    body = world["api"].wait_status(world["prod"][1], eid, BOB, "deferred")
    assert "TLS required by require_tls" in body["recipients"][BOB]["smtp_reply"]
    assert not [m for m in world["sink"].received if f"X-Postline-Id: {eid}\r\n".encode() in m.data]
