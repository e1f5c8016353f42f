"""Received mail throughput (docs/receiving.md): `postline all` (embedded) with one
receiving domain; C SMTP connections send N DKIM-signed 100 KB messages (HTML body and a
64 KB attachment) to the inbound listener. Each 250 means the message was parsed, judged
(SPF, DKIM and DMARC against a loopback DNS server), stored in chDB with its attachment and
announced on the log, so messages/s is counted from the 250s."""
from __future__ import annotations

import base64
import concurrent.futures
import os
import smtplib
import statistics
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

MESSAGES, CONNECTIONS = 600, 4


def _message(pem: bytes, i: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Ann <ann@sender.test>", f"u{i % 50}@inbox.test", f"bench {i}"
    msg["Message-ID"] = f"<bench-{i}-{os.urandom(4).hex()}@sender.test>"
    msg.set_content("hello " * 1000)
    msg.add_alternative("<p>" + "hello " * 2500 + "</p>", subtype="html")
    msg.add_attachment(os.urandom(64 * 1024), maintype="application", subtype="octet-stream", filename="data.bin")
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return dkim.sign(raw, b"s1", b"sender.test", pem, include_headers=[b"from", b"to", b"subject"]) + raw


def _setup_dns(dns: DnsServer) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    dns.txt("s1._domainkey.sender.test", [record[i:i + 250] for i in range(0, len(record), 250)])
    dns.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    return pem


def _wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("the inbound listener did not start")


def run(messages: int = MESSAGES, connections: int = CONNECTIONS) -> dict:
    dns = DnsServer().start()
    pem = _setup_dns(dns)
    bodies = [_message(pem, i) for i in range(messages)]
    inbound = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = PostlineProcess(Path(tmp) / "data", env={"POSTLINE_DNS_SERVER": dns.address,
                                                        "POSTLINE_INBOUND_SMTP_PORT": str(inbound),
                                                        "POSTLINE_INBOUND_RATE_PER_MINUTE": str(messages * 10)}).start()
        try:
            api = Api(proc.url)
            sid, _ = production_service(api, dns, domain="inbox.test", name="bench")  # only a verified domain receives
            [did] = [d["id"] for d in api.admin("GET", f"/api/email/services/{sid}/domains").json()["data"]]
            api.admin("PATCH", f"/api/email/services/{sid}/domains/{did}", json={"receiving": True})
            _wait_listening(inbound)
            latencies: list[float] = []

            def one_connection(chunk: list[bytes]) -> None:
                with smtplib.SMTP("127.0.0.1", inbound, timeout=60) as s:
                    s.ehlo("mail.sender.test")
                    for i, raw in enumerate(chunk):
                        t = time.perf_counter()
                        s.sendmail("ann@sender.test", [f"u{i % 50}@inbox.test"], raw)
                        latencies.append((time.perf_counter() - t) * 1000)

            chunks = [bodies[i::connections] for i in range(connections)]
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(connections) as pool:
                list(pool.map(one_connection, chunks))
            elapsed = time.perf_counter() - start
            latencies.sort()
            stored = api.admin("GET", f"/api/email/services/{sid}/emails/receiving", params={"limit": 1}).json()
            return {"messages": messages, "connections": connections,
                    "message_bytes": round(statistics.mean(len(b) for b in bodies)),
                    "msg_per_s": round(messages / elapsed, 1), "mb_per_s": round(sum(map(len, bodies)) / elapsed / 1e6, 2),
                    "latency_ms": {"p50": round(statistics.median(latencies), 1),
                                   "p99": round(latencies[int(len(latencies) * 0.99)], 1)},
                    "newest_stored": bool(stored["data"])}
        finally:
            proc.stop()
            dns.stop()
