"""Relay throughput: N requests already on the log, one relay process delivers them with
dual DKIM (RSA-2048 + Ed25519) into a loopback SMTP sink in another process on the same
two cores (``sink``: ``lean`` or ``aiosmtpd``, see tests/bench/sink.py)."""
from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dkim

from services.relay.runner import Relay
from shared import events as ev
from shared import metrics
from shared.crypto import unseal
from shared.dkim_keys import generate
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.broker import free_port, wait_port


class StockDkimpySigner:
    """For comparison: dkimpy's own signing (pure-Python RSA, PEM parsed on every call)."""

    def __init__(self, master_key: bytes):
        self.master_key = master_key

    def sign(self, raw: bytes, d: ev.DomainSaved) -> bytes:
        pem = unseal(self.master_key, d.rsa_private_sealed, d.domain_id)
        seed = unseal(self.master_key, d.ed_private_sealed, d.domain_id)
        rsa = dkim.sign(raw, d.rsa_selector.encode(), d.domain.encode(), pem, linesep=b"\r\n")
        ed = dkim.sign(raw, d.ed_selector.encode(), d.domain.encode(), base64.b64encode(seed),
                       signature_algorithm=b"ed25519-sha256", linesep=b"\r\n")
        return ed + rsa + raw

    async def sign_async(self, raw: bytes, d: ev.DomainSaved) -> bytes:
        return await asyncio.to_thread(self.sign, raw, d)

    def close(self) -> None:
        pass


def rsa_sign_ms() -> float:
    """This machine's speed right now: one RSA-2048 signature (OpenSSL, one thread), which
    is most of a message's CPU. Shared machines drift by ±20% between runs."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = time.perf_counter()
    for _ in range(200):
        key.sign(b"calibration", padding.PKCS1v15(), hashes.SHA256())
    return round((time.perf_counter() - start) / 200 * 1000, 3)


async def run(n: int, stock: bool = False, sink_kind: str = "lean") -> dict:
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "tests.bench.sink", str(port), sink_kind], stdout=subprocess.PIPE)
    wait_port(port)
    data = Path(tempfile.mkdtemp(prefix="postline-bench-"))
    settings = Settings(data_dir=data, delivery="smarthost", smarthost=f"127.0.0.1:{port}", secret_key="bench")
    rt = Runtime(settings)
    await rt.start(with_store=False)
    try:
        svc = ev.ServiceSaved(workspace_id="w", service_id=ev.new_id(), name="bench", mode="production",
                              created_at=ev.utcnow())
        domain_id = ev.new_id()
        dom = ev.DomainSaved(workspace_id="w", service_id=svc.service_id, domain_id=domain_id, domain="acme.test",
                             verified=True, created_at=ev.utcnow(), **generate(settings.master_key, domain_id))
        await rt.control.save(svc)
        await rt.control.save(dom)
        reqs = [ev.SendRequested(workspace_id="w", service_id=svc.service_id, email_id=ev.new_id(), mode="production",
                                 sending_domain="acme.test", to=[f"user{i}@example.com"], subject=f"Receipt #{i}",
                                 html=f"<p>Thanks for order <b>{i}</b></p>", text=f"Thanks for order {i}",
                                 recipients=[f"user{i}@example.com"], **{"from": "Acme <billing@acme.test>"})
                 for i in range(n)]
        await rt.log.append_many(ev.Topic.REQUESTS, [(r.email_id, ev.encode(r)) for r in reqs])
        relay = Relay(rt)
        if stock:
            relay.ctx.signer = StockDkimpySigner(settings.master_key)
        before = metrics.DELIVERIES.labels("delivered")._value.get()
        stop = asyncio.Event()
        start = time.perf_counter()
        task = asyncio.create_task(relay.run(stop))
        warm_at = None  # steady state: from the 10% mark on (start-up, pools and key parsing excluded)
        while (done := metrics.DELIVERIES.labels("delivered")._value.get() - before) < n:
            if warm_at is None and done >= n // 10:
                warm_at, warm_done = time.perf_counter(), done
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
        end = time.perf_counter()
        elapsed = end - start
        stop.set()
        await task
        return {"messages": n, "seconds": round(elapsed, 2), "msg_per_s": round(n / elapsed, 1),
                "steady_msg_per_s": round((n - warm_done) / (end - warm_at), 1),
                "signing": "dkimpy (stock)" if stock else "dkimpy canonicalization + OpenSSL signatures",
                "sink": sink_kind, "rsa_sign_ms": rsa_sign_ms()}
    finally:
        await rt.close()
        sink.terminate()
        sink.wait()
