"""Dashboard pages with 100,000 messages (and ~210,000 events) of one service in chDB.

The real app (``create_app``) is served by uvicorn on a loopback port in this process; an
HTTP client signed in like a browser loads each page repeatedly. Figures are whole HTTP
round trips: p50 and p99 per page."""
from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn

from services.api.app import create_app
from shared import events as ev
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.broker import free_port

MESSAGES = 100_000
ROUNDS = 30
ADMIN = "pl_adm_bench_dashboard_token_0123456789"
SID = "svc-bench"


async def fill(rt: Runtime) -> str:
    """100k messages over 30 days (a quarter tagged), each sent + delivered, 10% also bounced;
    plus 100k messages of other services. Returns one message id to open."""
    await rt.store.execute(f"""
        INSERT INTO postline.messages
        SELECT concat('m-', toString(number)) AS email_id,
               now64(3) - toIntervalSecond(number * 26) AS time, 'default',
               if(number < {MESSAGES}, '{SID}', concat('svc-', toString(number % 50))), 'production',
               'Acme <billing@acme.test>', concat('Invoice #', toString(number)),
               [concat('u', toString(number % 20000), '@example.com')], [], [],
               if(number % 4 = 0, ['welcome'], []),
               concat('{{"email_id":"m-', toString(number), '","mode":"production","from":"Acme <billing@acme.test>",',
                      '"to":["u', toString(number % 20000), '@example.com"],"subject":"Invoice #', toString(number),
                      '","tags":[],"recipients":["u', toString(number % 20000), '@example.com"],"time":"',
                      replaceOne(toString(time), ' ', 'T'), 'Z","service_id":"{SID}","workspace_id":"default"}}')
        FROM numbers({2 * MESSAGES})""")
    await rt.store.execute(f"""
        INSERT INTO postline.events
        SELECT concat('e-', toString(number)), t.1, now64(3) - toIntervalSecond(intDiv(number, 3) * 26) + t.2,
               'default', '{SID}', concat('m-', toString(intDiv(number, 3))),
               concat('u', toString(intDiv(number, 3) % 20000), '@example.com'), [], 250, '',
               concat('{{"type":"', t.1, '","time":"', replaceOne(toString(now64(3) - toIntervalSecond(intDiv(number, 3) * 26) + t.2), ' ', 'T'),
                      'Z","email_id":"m-', toString(intDiv(number, 3)), '","recipient":"u',
                      toString(intDiv(number, 3) % 20000), '@example.com","smtp_code":250,"smtp_reply":"250 2.0.0 OK"}}')
        FROM (SELECT number, [('sent', 0), ('delivered', 1), ('bounced', 2)][number % 3 + 1] AS t
              FROM numbers({3 * MESSAGES}))
        WHERE t.1 != 'bounced' OR intDiv(number, 3) % 10 = 0""")
    return "m-1234"


async def run() -> dict:
    data = Path(tempfile.mkdtemp(prefix="postline-bench-dashboard-"))
    rt = Runtime(Settings(data_dir=data, admin_token=ADMIN, secret_key="bench"))
    await rt.start()
    await rt.ensure_default_workspace()
    await rt.control.save(ev.ServiceSaved(workspace_id="default", service_id=SID, name="Acme billing",
                                          created_at=ev.utcnow()))
    for n in range(200):
        await rt.control.save(ev.SuppressionSaved(workspace_id="default", service_id=SID,
                                                  email=f"gone{n}@example.com", reason="hard_bounce",
                                                  created_at=ev.utcnow()))
    for n in range(100):  # captured mail of this workspace's messages
        raw = (f"From: billing@acme.test\r\nTo: u{n}@example.com\r\nSubject: Invoice #{n}\r\n"
               f"X-Postline-Id: m-{n}\r\nContent-Type: text/html\r\n\r\n<p>Invoice {n}</p>\r\n").encode()
        mail_id = await rt.inbox.store("billing@acme.test", [f"u{n}@example.com"], raw)
    t = time.perf_counter()
    one = await fill(rt)
    filled_s = time.perf_counter() - t

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    pages = {
        "services": "/services",
        "service_24h": f"/services/{SID}?period=24h", "service_7d": f"/services/{SID}?period=7d",
        "service_30d": f"/services/{SID}?period=30d",
        "messages": f"/services/{SID}/messages", "messages_status_bounced": f"/services/{SID}/messages?status=bounced",
        "messages_to": f"/services/{SID}/messages?to=u123%40example.com",
        "messages_tag": f"/services/{SID}/messages?tag=welcome", "messages_24h": f"/services/{SID}/messages?since=24h",
        "message": f"/services/{SID}/messages/{one}", "suppressions": f"/services/{SID}/suppressions",
        "suppressions_search": f"/services/{SID}/suppressions?q=gone1", "domains": f"/services/{SID}/domains",
        "keys": f"/services/{SID}/keys", "inbox": "/inbox", "inbox_message": f"/inbox/{mail_id}",
    }
    out: dict = {"messages_in_service": MESSAGES, "messages_in_table": 2 * MESSAGES, "fill_s": round(filled_s, 1),
                 "rounds": ROUNDS}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            form = await http.get("/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            await http.post("/signin", data={"csrf": csrf, "token": ADMIN})
            for name, path in pages.items():
                times = []
                for _ in range(ROUNDS):
                    t = time.perf_counter()
                    r = await http.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                times.sort()
                out[name] = {"p50_ms": round(statistics.median(times), 1),
                             "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1)}
    finally:
        server.should_exit = True
        await serving
        await rt.close()
    return out
