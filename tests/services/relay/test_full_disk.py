"""A relay that cannot record a delivery stops taking work instead of sending it again.

In-process (the real runner, a failing ledger write injected at the file layer with the
``relay.ledger.write`` failpoint) and as a real `postline all` whose ledger directory is a
small tmpfs that the test fills and empties again. Each asserts: while the ledger cannot
be written no new SMTP transaction starts and nothing is sent again (duplicates at the
sink ≤ the transactions in flight at the failure), /readyz says not ready; once writes
succeed the relay resumes by itself and every accepted message is delivered."""
from __future__ import annotations

import os
import re
import subprocess
from collections import Counter

import httpx
import pytest

from services.ops import readiness
from shared import failpoints, metrics
from tests.support.postline import Api, PostlineProcess, sandbox_service
from tests.support.relay import append_requests, request, running_relay, until
from tests.support.smtp_sink import SmtpSink
from tests.support.waiting import until as until_sync


@pytest.fixture
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


def ids_at(sink) -> Counter:
    """How many times each email id reached the sink."""
    with sink.lock:
        return Counter(m.data.split(b"X-Postline-Id: ", 1)[1][:36].decode() for m in sink.received
                       if b"X-Postline-Id: " in m.data)


def email_id(n: int) -> str:
    return f"6a0e6a0e-0000-4000-8000-{n:012d}"


async def test_a_failing_ledger_write_stops_the_relay_until_it_succeeds(tmp_path, sink, monkeypatch):
    monkeypatch.setattr("services.relay.ledger.RETRY_FIRST", 0.1)
    async with running_relay(tmp_path / "data", sink, embedded_partitions=1) as (rt, relay):
        await append_requests(rt, [request(email_id(0), "warm@example.com")])
        await until(lambda: ids_at(sink)[email_id(0)], what="the first delivery")
        errors = metrics.RELAY_LEDGER_WRITE_ERRORS._value.get()
        failpoints.configure("relay.ledger.write", 1.0)  # the disk is full from here on
        try:
            await append_requests(rt, [request(email_id(1), "ann@example.com")])
            await until(lambda: not relay.ctx.ledger.writable, what="the ledger write to fail")
            in_flight = relay.ctx.in_flight.count  # the transactions whose outcome waits for the disk
            await append_requests(rt, [request(email_id(n), f"u{n}@example.com") for n in range(2, 6)])
            # three more failed writes (retries) while work is waiting: no resend, no new transaction
            await until(lambda: metrics.RELAY_LEDGER_WRITE_ERRORS._value.get() >= errors + 4, what="retries")
            during = ids_at(sink)
            ready, checks, _ = await readiness(rt)
            assert not ready and checks["ledger_writable"] is False
        finally:
            failpoints.configure("relay.ledger.write", None)  # space is back
        await until(lambda: all(ids_at(sink)[email_id(n)] for n in range(6)), what="every request delivered")
        ready, checks, _ = await readiness(rt)
        after = ids_at(sink)
    assert in_flight == 1 and during[email_id(1)] == 1
    assert all(during[email_id(n)] == 0 for n in range(2, 6))  # no new transaction while the ledger failed
    assert set(after.values()) == {1}, after  # nothing was sent twice
    assert ready and checks["ledger_writable"] is True


def mount_tmpfs(path, size: str = "256k") -> None:
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:  # needs root (CI runs as root); the in-process test above covers the logic
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def fill(directory) -> "os.PathLike":
    """Take every free byte of ``directory``'s filesystem; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def readyz(url: str) -> dict:
    return httpx.get(f"{url}/readyz", timeout=10).json()


@pytest.fixture
def full_disk_postline(tmp_path, sink):
    """`postline all` (one process) whose ledger directory is a 256 KB tmpfs; yields
    ``(process, api, key, ledger dir)`` with a verified sandbox recipient ann@example.com."""
    data = tmp_path / "data"
    ledger = data / "ledger"
    mount_tmpfs(ledger)
    proc = PostlineProcess(data, env={"POSTLINE_WORKERS": "1", "POSTLINE_DELIVERY": "smarthost",
                                      "POSTLINE_SMARTHOST": sink.address})
    try:
        proc.start()
        api = Api(proc.url)
        _, key = sandbox_service(api, sink)
        yield proc, api, key, ledger
    finally:
        proc.stop()
        subprocess.run(["umount", "-l", str(ledger)], check=False)


def fill_and_send(proc, api, key, ledger, n: int) -> tuple[list[str], float]:  # n < the sandbox cap (50 a day)
    """Fill the ledger's disk, send ``n`` messages, wait until the relay stops on the
    failed write; returns the accepted ids and the transactions in flight at the failure."""
    fill(ledger)
    ids = []
    for i in range(n):
        r = api.send(key, {"from": "Acme <hello@acme.test>", "to": "ann@example.com", "subject": f"m{i}", "text": "x"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    state = until_sync(lambda: (s := readyz(proc.url))["checks"].get("ledger_writable") is False and s,
                       timeout=60, what="readyz to report the ledger unwritable")
    assert state["ready"] is False
    return ids, metric(proc.url, "postline_relay_in_flight")


def test_a_full_disk_stops_the_relay_and_it_resumes_when_space_returns(full_disk_postline, sink):
    proc, api, key, ledger = full_disk_postline
    ids, in_flight = fill_and_send(proc, api, key, ledger, 45)
    errors = metric(proc.url, "postline_relay_ledger_write_errors_total")
    until_sync(lambda: metric(proc.url, "postline_relay_ledger_write_errors_total") >= errors + 2, timeout=60,
               what="two retries of the ledger write")
    during = ids_at(sink)
    until_sync(lambda: metric(proc.url, "postline_relay_ledger_write_errors_total") >= errors + 3, timeout=60,
               what="another retry")
    assert ids_at(sink) == during  # nothing sent (again) while the ledger cannot be written
    assert max(during.values()) == 1 and len(set(ids) & set(during)) < len(ids)  # work is waiting, not taken
    assert readyz(proc.url)["ready"] is False
    (ledger / "filler").unlink()  # space returns
    until_sync(lambda: readyz(proc.url)["ready"], timeout=60, what="readyz true again")
    until_sync(lambda: all(ids_at(sink)[i] for i in ids), timeout=60, what="every accepted message delivered")
    duplicates = sum(n - 1 for n in ids_at(sink).values())
    assert duplicates <= in_flight and duplicates == 0  # the relay kept the outcomes: nothing repeated
    out = proc.output()
    assert out.count("cannot be written") == 1 and out.count("writable again") == 1  # one line each way


def test_a_relay_stopped_while_the_disk_is_full_repeats_at_most_what_was_in_flight(full_disk_postline, sink):
    proc, api, key, ledger = full_disk_postline
    ids, in_flight = fill_and_send(proc, api, key, ledger, 45)
    proc.stop()  # SIGTERM: the unwritten outcomes are given up, their requests stay uncommitted
    (ledger / "filler").unlink()
    proc.start()
    until_sync(lambda: all(ids_at(sink)[i] for i in ids), timeout=60, what="every accepted message delivered")
    counts = ids_at(sink)
    duplicates = sum(n - 1 for n in counts.values())
    assert in_flight >= 1 and duplicates <= in_flight and max(counts.values()) <= 2, (in_flight, counts)
