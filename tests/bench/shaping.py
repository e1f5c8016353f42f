"""Shaping per mailbox provider (services/relay/shaping/): MX delivery to 5 providers with
limits vs without, in the same run, and the shaper's CPU cost per message.

One MX sender (services/relay/senders/mx.py) in this process, a real DNS server publishing
the MX hosts of Google, Microsoft, Yahoo, Apple and one other domain (all at the lean sink of
tests/bench/sink.py, in its own process: providers are told apart by MX host name). "With
limits": 50 msg/s and 4 connections per provider, so at most 250 msg/s in total; "without":
limits too high to bind (the shaper still runs: its cost is in that number). The shaper's
cost per message is measured apart: the shared-file transactions a message makes (a start
time, and the clean-reply bookkeeping) on a fresh file, CPU time of the process."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services.relay.senders.mx import MxSender
from services.relay.shaping.store import SqliteShapingStore
from shared import events as ev
from shared.control.state import ControlState
from shared.settings import Settings
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer

PROVIDERS = {"google": ("gmail.bench", "gmail-smtp-in.l.google.com"),
             "microsoft": ("outlook.bench", "bench.mail.protection.outlook.com"),
             "yahoo": ("yahoo.bench", "mta5.am0.yahoodns.net"),
             "apple": ("icloud.bench", "mx01.mail.icloud.com"),
             "other": ("corp.bench", "mx.corp.bench")}
RAW = b"From: a@acme.test\r\nTo: b@x\r\nSubject: bench\r\n\r\n" + b"x" * 2000 + b"\r\n"


def control(rate: float, connections: int, per_connection: int) -> ControlState:
    state = ControlState()
    lim = ev.ProviderLimits(max_connections=connections, rate=rate, per_connection=per_connection)
    state.shaping = ev.ShapingSaved(workspace_id="bench", providers={name: lim for name in PROVIDERS})
    return state


async def deliver(settings: Settings, state: ControlState, per_provider: int, concurrency: int) -> dict[str, float]:
    sender = MxSender(settings, state)
    slots = asyncio.Semaphore(concurrency)

    async def one(domain: str, i: int) -> bool:
        async with slots:
            res = await sender.send("bounces@acme.test", [f"u{i}@{domain}"], RAW)
            return all(r.status == "delivered" for r in res.values())

    cpu, wall = time.process_time(), time.perf_counter()
    # interleaved: the first messages go to every provider, as a mixed queue does
    ok = await asyncio.gather(*(one(domain, i) for i in range(per_provider) for domain, _ in PROVIDERS.values()))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await sender.close()
    n = len(ok)
    return {"messages": n, "delivered": sum(ok), "seconds": round(wall, 2), "msgs_per_s": round(n / wall, 1),
            "cpu_ms_per_msg": round(cpu * 1000 / n, 3)}


async def shaper_cost(n: int, data_dir: Path) -> dict[str, float]:
    store = SqliteShapingStore(data_dir / "cost.sqlite3")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await store.reserve("google", 1e9)
        await store.clean("google", 1e9, 60.0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"messages": n, "cpu_us_per_msg": round(cpu * 1e6 / n, 1), "wall_us_per_msg": round(wall * 1e6 / n, 1)}


def run(per_provider: int = 400) -> dict[str, object]:
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "tests.bench.sink", str(port), "lean"])
    dns = DnsServer().start()
    for domain, host in PROVIDERS.values():
        dns.mx(domain, (10, host))
        dns.a(host, "127.0.0.1")
    try:
        time.sleep(1.0)  # the sink process starts listening
        out: dict[str, object] = {"note": "2 shared cores, busy with other work: compare the rows, not the absolutes"}
        with tempfile.TemporaryDirectory() as tmp:
            for name, state in (("with_limits_50_per_s_4_conns", control(50.0, 4, 100)),
                                ("without_limits", control(10_000.0, 64, 10_000))):
                settings = Settings(delivery="mx", dns_server=dns.address, mx_port=port, data_dir=Path(tmp) / name)
                out[name] = asyncio.run(deliver(settings, state, per_provider, 128))
            out["shaper_cost"] = asyncio.run(shaper_cost(2000, Path(tmp)))
        return out
    finally:
        dns.stop()
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
