"""Memory under large sends (issue 16, defect 7): `postline all` delivering to a lean SMTP
sink, N sends of a 1 MB body from 4 clients; resident memory (VmRSS of the process and
its children) after a warm-up and at the end should stay flat (±10 %)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.clients import post_sends
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

CLIENTS, WARMUP = 4, 300
BODY_TEXT = ("x" * 99 + "\n") * 10_000  # 1 MB, in lines as real text is


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """``field`` (VmRSS, RssAnon, RssFile) of ``pid`` and its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith(field + ":")))
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            todo += [int(c) for c in children]
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
    return round(total / 1024, 1)


def children_by_role(pid: int) -> dict[str, list[int]]:
    """The children of a running `postline all` by role (``python -m services.supervisor ROLE …``:
    api, relay, analytics+webhooks)."""
    found: dict[str, list[int]] = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        found.setdefault(argv[3].decode() if len(argv) > 3 else "other", []).append(int(child))
    return found


def per_role(pid: int, measure) -> dict[str, float]:
    """``measure(pid)`` of ``pid`` ("parent", its own share) and of its children summed per role;
    ``measure`` covers a process and its descendants (``rss_mb``, e2e's ``tree_cpu_s``)."""
    out = {role: round(sum(measure(p) for p in pids), 2) for role, pids in children_by_role(pid).items()}
    return {"parent": round(measure(pid) - sum(out.values()), 2), **out}


def run(sends: int = 10_000) -> dict:
    dns = DnsServer().start()
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "tests.bench.sink", str(port)], stdout=subprocess.PIPE)
    sink.stdout.readline()
    tmp = Path(tempfile.mkdtemp(prefix="postline-bench-mem-"))  # ~1 GB per 1,000 sends: removed at the end
    proc = PostlineProcess(tmp / "data",
                           env={"POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "smarthost",
                                "POSTLINE_SMARTHOST": f"127.0.0.1:{port}",
                                "POSTLINE_RATE_PER_MINUTE": "1000000", "POSTLINE_RATE_PER_DAY": "100000000"}).start()
    try:
        api = Api(proc.url)
        _, key = production_service(api, dns)
        body = {"from": "a@acme.test", "to": "bench@example.com", "subject": "memory", "text": BODY_TEXT}
        codes: dict[int, int] = {}

        def batch(n: int) -> None:
            post_sends(proc.url, key, body, n, CLIENTS, codes)

        start_rss = rss_mb(proc.proc.pid)
        batch(WARMUP)
        time.sleep(5)  # let the relay drain the warm-up
        warm_rss = rss_mb(proc.proc.pid)
        warm_split = {f: rss_mb(proc.proc.pid, f) for f in ("RssAnon", "RssFile")}
        warm_roles = per_role(proc.proc.pid, rss_mb)
        samples = []
        t0 = time.perf_counter()
        for _ in range(10):
            batch((sends - WARMUP) // 10)
            samples.append(rss_mb(proc.proc.pid))
        elapsed = time.perf_counter() - t0
        time.sleep(5)
        end_rss = rss_mb(proc.proc.pid)
        split = {f: rss_mb(proc.proc.pid, f) for f in ("RssAnon", "RssFile")}
        roles = per_role(proc.proc.pid, rss_mb)
        return {"sends": sum(codes.values()), "body_bytes": len(BODY_TEXT), "status_codes": codes,
                "rss_mb": {"at_start": start_rss, "after_warmup": warm_rss, "during": samples, "at_end": end_rss},
                "rss_split_after_warmup_mb": warm_split, "rss_split_at_end_mb": split,
                "rss_by_role_after_warmup_mb": warm_roles, "rss_by_role_at_end_mb": roles, "growth_after_warmup_pct": round(100 * (end_rss - warm_rss) / warm_rss, 1),
                "sends_per_s": round((sends - WARMUP) / elapsed, 1)}
    finally:
        proc.stop()
        sink.terminate()
        sink.wait()
        dns.stop()
        shutil.rmtree(tmp, ignore_errors=True)
