"""`postline all` as supervised processes over one data dir (docs/operations.md): real processes, a real
SMTP sink, fresh connections so requests spread over the API workers (SO_REUSEPORT)."""
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
import pytest

from tests.support.postline import ROOT, Api, PostlineProcess, sandbox_service
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "subject": "Hi", "message": "<p>hello</p>"}


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


@contextlib.contextmanager
def running_cluster(data_dir: Path, sink: SmtpSink):
    """`postline all` with two API workers and two relay processes delivering to ``sink``; yields (process, api, key)
    of a sandbox service whose recipient ann@example.com is verified."""
    # the tests here present retired tokens and keys on purpose, dozens of times: not a brute force to throttle
    proc = PostlineProcess(data_dir, env={"POSTLINE_WORKERS": "2", "POSTLINE_RELAY_PROCESSES": "2", "POSTLINE_DELIVERY": "smarthost",
                                          "POSTLINE_SMARTHOST": sink.address,
                                          "POSTLINE_AUTH_FREE_FAILURES": "1000"}).start()
    try:
        wait_until(lambda: "Postline API on" in proc.output(), what="the banner")
        api = Api(proc.url)
        _, key = sandbox_service(api, sink)
        yield proc, api, key
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sink):
    """One cluster for the tests below that keep it running (in file order: the sandbox
    service's 50 sends a day are shared, and the token rotation comes last)."""
    with running_cluster(tmp_path_factory.mktemp("cluster") / "data", sink) as running:
        yield running


@pytest.fixture
def own_cluster(tmp_path, sink):
    """A cluster the test may stop."""
    with running_cluster(tmp_path / "data", sink) as running:
        yield running


def children_of(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: {pid: command line}."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == pid and state != "Z":
            out[int(entry.name)] = cmd
    return out


def roles(pid: int) -> dict[str, list[int]]:
    by_role: dict[str, list[int]] = {}
    for child, cmd in children_of(pid).items():
        if "services.supervisor" in cmd:
            by_role.setdefault(cmd.split("services.supervisor", 1)[1].split()[0], []).append(child)
    return by_role


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def fresh(url: str) -> httpx.Client:
    """A client whose connection is new: the kernel picks the API worker per connection."""
    return httpx.Client(base_url=url, timeout=30, headers={"Connection": "close"})


def wait_until(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} never happened")


def test_starts_one_process_per_role_and_sigterm_stops_them_all(own_cluster):
    proc, api, key = own_cluster
    by_role = roles(proc.proc.pid)
    assert sorted(by_role) == ["analytics+webhooks+housekeeping", "api", "relay"]
    assert len(by_role["api"]) == 2 and len(by_role["relay"]) == 2
    assert len(by_role["analytics+webhooks+housekeeping"]) == 1
    children = [p for pids in by_role.values() for p in pids]
    out = proc.output()
    assert out.count("Postline API on http://127.0.0.1:") == 1  # one banner, from the parent
    # the analytics process serves chDB to the others on loopback, to them only (a password)
    store = "http://" + re.search(r"analytics store served to the other processes on (127\.0\.0\.1:\d+)", out)[1]
    assert httpx.post(store, content="SELECT 1", trust_env=False).status_code == 401
    assert httpx.post(store, content="SELECT 1", auth=("postline", "guess"), trust_env=False).status_code == 401
    assert proc.stop() == 0
    assert not any(alive(p) for p in children)  # no orphan


def test_a_killed_relay_or_api_worker_is_restarted_and_every_accepted_send_is_delivered(cluster, sink):
    proc, api, key = cluster
    accepted = []

    def send(n):
        for _ in range(n):
            with fresh(proc.url) as http:
                r = http.post("/emails", json=BODY, headers={"Api-Key": key})
            if r.status_code == 200:
                accepted.append(r.json()["id"])

    send(5)
    relays = roles(proc.proc.pid)["relay"]
    relay = relays[0]
    os.kill(relay, signal.SIGKILL)
    send(5)  # accepted while that relay is down: durable in the log, delivered once it is back
    new_relay = wait_until(lambda: [p for p in roles(proc.proc.pid).get("relay", []) if p not in relays],
                           what="a new relay process")
    worker = roles(proc.proc.pid)["api"][0]
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: len([p for p in roles(proc.proc.pid).get("api", []) if p != worker]) == 2,
               what="a new API worker")
    send(5)
    assert len(accepted) == 15
    for email_id in accepted:
        sink.wait_for(lambda m, eid=email_id: f"<{eid}@".encode() in m.data, timeout=60)
    assert alive(new_relay[0]) and "relay (pid %d) exited" % relay in proc.output()
    # any API process's /metrics counts the relay's deliveries, the killed relay's included
    text = fresh(proc.url).get("/metrics").text
    delivered = re.search(r'^postline_relay_deliveries_total\{outcome="delivered"\} (\S+)$', text, re.M)
    assert delivered and float(delivered.group(1)) >= 15, text[:2000]


def test_control_changes_and_sends_are_seen_by_every_worker(cluster):
    proc, api, key = cluster
    # a key made through one worker works at once on fresh connections (so on the other worker too)
    sid = api.create_service("second")
    new_key = api.create_key(sid)
    unknown = "/emails/00000000-0000-4000-8000-000000000000"  # 404 once the key is accepted, 401 before

    wait_until(lambda: fresh(proc.url).get(unknown, headers={"Api-Key": new_key}).status_code == 404,
               timeout=5, what="the new key accepted")
    codes = {fresh(proc.url).get(unknown, headers={"Api-Key": new_key}).status_code for _ in range(20)}
    assert codes == {404}
    # GET /emails/{id} right after the POST answers whichever worker accepted it
    for _ in range(10):
        with fresh(proc.url) as http:
            email_id = http.post("/emails", json=BODY, headers={"Api-Key": key}).json()["id"]
        with fresh(proc.url) as http:
            r = http.get(f"/emails/{email_id}", headers={"Api-Key": key})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == email_id


def test_the_sandbox_cap_holds_across_workers(cluster):
    proc, api, key = cluster
    codes = []
    for _ in range(60):
        with fresh(proc.url) as http:
            codes.append(http.post("/emails", json=BODY, headers={"Api-Key": key}).status_code)
    # 50 a day per service, the earlier tests' 25 sends included: the workers share one count
    assert codes.count(200) <= 25 and codes.count(429) >= 35


def test_workers_1_keeps_every_role_in_one_process(tmp_path):
    proc = PostlineProcess(tmp_path / "data", env={"POSTLINE_WORKERS": "1"}).start()
    try:
        assert roles(proc.proc.pid) == {}
        assert Api(proc.url).admin("GET", "/api/email/services").status_code == 200
    finally:
        assert proc.stop() == 0


def test_children_stop_when_the_parent_is_killed(tmp_path):
    proc = PostlineProcess(tmp_path / "data", env={"POSTLINE_WORKERS": "2", "POSTLINE_RELAY_PROCESSES": "2"}).start()
    try:
        children = [p for pids in roles(proc.proc.pid).values() for p in pids]
        assert len(children) == 5  # analytics+webhooks+housekeeping, two relays, two API workers
        proc.kill()  # SIGKILL: the parent cannot stop them itself; the kernel tells them
        wait_until(lambda: not any(alive(p) for p in children), what="every child gone")
    finally:
        proc.stop()


def test_a_second_postline_all_over_the_same_data_dir_or_port_refuses_to_start(cluster, tmp_path):
    proc, api, key = cluster
    same_dir = PostlineProcess(proc.data_dir, env={"POSTLINE_WORKERS": "2"})
    same_port = PostlineProcess(tmp_path / "other", env={"POSTLINE_WORKERS": "2"}, port=proc.port)
    for second, says in ((same_dir, "another `postline all` is running over"), (same_port, "something is listening")):
        second.start(wait=False)
        assert second.proc.wait(60) != 0
        assert says in second.output()
    assert api.admin("GET", "/api/email/services").status_code == 200  # the first one carries on


def test_rotate_token_while_running_gives_a_token_every_worker_accepts(cluster):
    proc, api, key = cluster
    out = subprocess.run([sys.executable, "-m", "services.cli", "workspace", "rotate-token", "default"], cwd=ROOT,
                         env=proc.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.split("admin token (shown once): ")[1].split()[0]

    def status(tok):
        return fresh(proc.url).get("/api/email/services", headers={"Authorization": f"Bearer {tok}"}).status_code

    wait_until(lambda: status(token) == 200, timeout=5, what="the rotated token accepted")
    assert {status(token) for _ in range(20)} == {200}
    wait_until(lambda: status(api.token) == 401, timeout=5, what="the old token refused")
    assert {status(api.token) for _ in range(20)} == {401}


def test_after_kill_9_a_new_postline_all_waits_for_the_draining_children_then_starts(tmp_path):
    slow = SmtpSink(data_delay=6).start()  # the relay drains transactions in flight for seconds
    env = {"POSTLINE_WORKERS": "2", "POSTLINE_RELAY_PROCESSES": "1", "POSTLINE_DELIVERY": "smarthost",
           "POSTLINE_SMARTHOST": slow.address}
    first = PostlineProcess(tmp_path / "data", env=env).start()
    second = PostlineProcess(tmp_path / "data", env=env, port=first.port)
    try:
        api = Api(first.url)
        _, key = sandbox_service(api, slow)
        # the verification mail's transaction must be over, so the one in flight at the kill is
        # one of these, just begun: it holds the relay for seconds after the kill
        wait_until(lambda: not metric_in_flight(first.url), what="the verification mail's transaction over")
        for i in range(3):
            assert api.send(key, {**BODY, "subject": f"drain {i}"}).status_code == 200
        wait_until(lambda: metric_in_flight(first.url), what="a transaction in flight")
        children = [p for pids in roles(first.proc.pid).values() for p in pids]
        first.kill()  # SIGKILL: the children get SIGTERM from the kernel and finish what they hold
        assert any(alive(p) for p in children)
        second.start(wait=False)  # not second.wait_ready(): the old API children may still answer on the port
        wait_until(lambda: "waiting up to" in second.output(), what="the new instance saying it waits")
        assert "previous `postline all`" in second.output()
        # both instances write this log: the second banner is the new instance, ready
        wait_until(lambda: second.output().count("Postline API on") == 2, timeout=60, what="the new instance ready")
        assert not any(alive(p) for p in children)  # it started only once they were gone
        assert Api(second.url).admin("GET", "/api/email/services").status_code == 200
    finally:
        second.stop()
        first.stop()
        slow.stop()


def metric_in_flight(url: str) -> bool:
    text = fresh(url).get("/metrics").text
    found = re.search(r"^postline_relay_in_flight (\S+)$", text, re.M)
    return bool(found and float(found.group(1)) > 0)


async def test_the_wait_for_a_previous_instance_is_bounded(tmp_path):
    import asyncio
    import fcntl

    from services.supervisor import _lock_data_dir
    from shared.settings import Settings

    data = tmp_path / "data"
    data.mkdir()
    held = os.open(data / "postline-all.lock", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(held, b"999999999")  # a parent that is gone; its children (this test) keep the lock
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(SystemExit, match="another `postline all` is running .*still after waiting"):
            await _lock_data_dir(Settings(data_dir=data), asyncio.Event(), wait=0.5)
    finally:
        os.close(held)


def test_housekeeping_runs_once_per_data_dir_and_every_relay_is_alike(tmp_path):
    """The data dir's singleton duties (services/housekeeping.py) have exactly one process in
    `postline all`, never a relay; `postline relay` on its own runs them for its own data dir."""
    from services.cli import COMMAND_ROLES
    from services.supervisor import plan
    from shared.settings import Settings

    children, sock = plan(Settings(data_dir=tmp_path, relay_processes=3, workers=2), {})
    try:
        placed = [c.name for c in children if "housekeeping" in c.role.split("+")]
        assert placed == ["analytics"]
        assert {c.role for c in children if c.name.startswith("relay")} == {"relay"}
    finally:
        if sock is not None:
            sock.close()
    assert COMMAND_ROLES["relay"].split("+") == ["relay", "housekeeping"]
