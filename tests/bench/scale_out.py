"""Relay scale-out on Kafka (issue 34): how fast 1, 2 and 3 relay processes drain the same
backlog from the test broker (tansu), same run.

For each relay count: a fresh broker, one `postline api` process (Kafka mode) and a
production service; ``n`` sends of the 5 KB receipt are accepted first, with no relay
running, so the backlog is on the log; then the relays start together. The rate is taken
between the sink's 10th and 90th percent of the backlog: the relays' steady drain rate, not
their start-up (a Python process and a consumer-group join: seconds) nor the API's.
The sink is the lean one (tests/bench/sink.py), so it is not the limit."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.bench.e2e import Sink, bodies_of, post_all, tree_cpu_s
from tests.bench.shapes import BY_NAME
from tests.support.broker import Tansu
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

SHAPE = BY_NAME["receipt_5kb"]


def drain(n: int, relays: int, root: Path) -> dict:
    broker, dns, sink = Tansu(root / "tansu.log"), DnsServer().start(), Sink("lean")
    env = {"POSTLINE_KAFKA_BOOTSTRAP": broker.bootstrap, "POSTLINE_KAFKA_IDEMPOTENCE": "false",
           "POSTLINE_KAFKA_SESSION_TIMEOUT_MS": "6000", "POSTLINE_DNS_SERVER": dns.address,
           "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": f"127.0.0.1:{sink.port}",
           "POSTLINE_RATE_PER_MINUTE": "10000000", "POSTLINE_RATE_PER_DAY": "100000000"}
    api = PostlineProcess(root / "api", role="api", env=env).start()
    started: list[PostlineProcess] = []
    try:
        domain = "scale-out.test"
        _, key = production_service(Api(api.url), dns, domain=domain, name="scale-out")
        intake = post_all(api.port, key, bodies_of(SHAPE, domain, 0, n))
        start = time.perf_counter()
        started = [PostlineProcess(root / f"relay{i}", role="relay", env=env).start(wait=False) for i in range(relays)]
        t10 = sink.wait_for(n // 10, timeout=900)
        cpu10 = sum(tree_cpu_s(p.proc.pid) for p in started)
        t90 = sink.wait_for(n * 9 // 10, timeout=900)
        cpu90 = sum(tree_cpu_s(p.proc.pid) for p in started)
        end = sink.wait_for(n, timeout=900)
        steady = n * 9 // 10 - n // 10
        return {"relays": relays, "messages": n, "seconds_all": round(end - start, 2),
                "msg_per_s_steady": round(steady / (t90 - t10), 1),
                "relay_cpu_ms_per_msg_steady": round((cpu90 - cpu10) * 1000 / steady, 2),
                "intake_req_per_s": intake.get("req_per_s")}
    finally:
        for p in started:
            p.stop()
        api.stop()
        sink.stop()
        dns.stop()
        broker.stop()


def run(n: int = 3000, counts: tuple[int, ...] = (1, 2, 3)) -> list[dict]:
    out = []
    for relays in counts:
        with tempfile.TemporaryDirectory(prefix="postline-scale-out-") as tmp:
            out.append(drain(n, relays, Path(tmp)))
        print(out[-1], flush=True)
    return out
