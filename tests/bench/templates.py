"""Intake of a send with a stored template vs the same message sent whole (issue 29), in one
run of one process: ``postline all`` with its relays paused, as the intake section
(tests/bench/e2e.py ``run_intake``). The template is the intake's ~5 KB HTML receipt with
``{{{ORDER}}}`` where the order number goes; the plain sends carry the rendered HTML. The two
kinds alternate in rounds so that a machine that gets busier mid-run weighs on both."""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from services.api.refusal import Refusal
from tests.bench.e2e import SENDER, WARMUP, Sink, html_body, post_all, request_body, start_postline
from tests.bench.memory import children_by_role
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, production_service

ROUNDS = 2
CPU_SENDS = 2000


def template_of_receipt() -> dict:
    """The intake's receipt as a template: the order number as a number variable."""
    html = html_body(0).replace("Receipt #0", "Receipt #{{{ORDER}}}").replace("of order 0<", "of order {{{ORDER}}}<")
    return {"name": "receipt", "alias": "receipt", "from": SENDER, "subject": "Receipt #{{{ORDER}}}", "html": html,
            "variables": [{"key": "ORDER", "type": "number"}]}


def template_body(i: int) -> dict:
    return {"to": f"user{i}@example.com", "template": {"id": "receipt", "variables": {"ORDER": i}}}


def _publish(api: Api, sid: str) -> None:
    key = api.admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "full", "permission": "full_access"})
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    tid = api.http.post("/templates", json=template_of_receipt(), headers=headers).json()["id"]
    assert api.http.post(f"/templates/{tid}/publish", headers=headers).status_code == 200


def accept_cpu(sends: int = CPU_SENDS) -> dict:
    """CPU microseconds per send of what differs between the kinds, in this process: parsing
    the JSON body into ``SendEmail`` and the template step (render + the rendered message's
    validation). ``process_time``, in alternating rounds: steadier than wall-clock rates on
    a shared machine."""
    from services.api.schemas import SendEmail
    from services.api.template_send import apply_template
    from shared import events as ev
    from shared.control.state import ControlState

    state, now = ControlState(), ev.utcnow()
    svc = ev.ServiceSaved(workspace_id="w", service_id="s", name="bench", created_at=now)
    content = ev.TemplateContent(sender=SENDER, subject="Receipt #{{{ORDER}}}", html=template_of_receipt()["html"],
                                 variables=[ev.TemplateVariable(key="ORDER", type="number")])
    state.apply(ev.TemplateVersionSaved(workspace_id="w", service_id="s", template_id="t", version_id="v", number=1,
                                        content=content, created_at=now))
    state.apply(ev.TemplateSaved(workspace_id="w", service_id="s", template_id="t", name="receipt", alias="receipt",
                                 draft=content, published_version_id="v", created_at=now, updated_at=now))
    kinds = {"plain": [json.dumps(request_body(i)).encode() for i in range(sends)],
             "template": [json.dumps(template_body(i)).encode() for i in range(sends)]}
    spent = {k: 0.0 for k in kinds}
    for _ in range(ROUNDS):
        for kind, bodies in kinds.items():
            t0 = time.process_time()
            for raw in bodies:
                assert not isinstance(apply_template(state, svc, SendEmail.model_validate_json(raw)), Refusal)
            spent[kind] += time.process_time() - t0
    return {f"{k}_us_per_send": round(v * 1e6 / (sends * ROUNDS), 1) for k, v in spent.items()}


def run(n: int = 3000) -> dict:
    """``n`` sends of each kind (in ``ROUNDS`` alternating rounds): req/s and latency of each."""
    tmp = Path(tempfile.mkdtemp(prefix="postline-bench-templates-"))
    dns, sink = DnsServer().start(), Sink("aiosmtpd")
    proc = start_postline(tmp, dns, "all", sink)
    try:
        api = Api(proc.url)
        sid, key = production_service(api, dns)
        _publish(api, sid)
        post_all(proc.port, key, [json.dumps(template_body(-i - 1)).encode() for i in range(WARMUP)])
        sink.wait_for(WARMUP)
        time.sleep(1)  # the relays record the last deliveries, then idle
        relays = children_by_role(proc.proc.pid).get("relay", [])
        for pid in relays:
            os.kill(pid, signal.SIGSTOP)
        per = n // ROUNDS
        results: dict[str, list[dict]] = {"plain": [], "template": []}
        try:
            for r in range(ROUNDS):
                start = r * per
                results["plain"].append(post_all(proc.port, key, [
                    json.dumps(request_body(start + i)).encode() for i in range(per)]))
                results["template"].append(post_all(proc.port, key, [
                    json.dumps(template_body(n + start + i)).encode() for i in range(per)]))
        finally:
            for pid in relays:
                os.kill(pid, signal.SIGCONT)
        return {kind: {"req_per_s": round(sum(x["requests"] for x in runs) / sum(x["seconds"] for x in runs), 1),
                       "p50_ms": [x["latency_ms"]["p50"] for x in runs], "p99_ms": [x["latency_ms"]["p99"] for x in runs],
                       "status_codes": [x["status_codes"] for x in runs]} for kind, runs in results.items()} | {
            "accept_cpu": accept_cpu(), "sends_per_kind": per * ROUNDS, "rounds": ROUNDS, "relay_processes_paused": len(relays),
            "note": "same process, alternating rounds; the load generator shares the 2 cores"}
    finally:
        proc.stop()
        sink.stop()
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)
