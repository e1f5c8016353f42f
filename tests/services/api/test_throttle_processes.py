"""Throttling holds for the installation, not per process (services/api/throttle.py): `postline
all` with two API processes sharing the HTTP and submission ports, real clients on fresh
connections (the kernel spreads them over both processes). And a weak admin token stops
the real entry point at start-up."""
from __future__ import annotations

import base64
import os
import smtplib
import subprocess
import sys

import httpx
import pytest

from tests.support.postline import ROOT, Api, PostlineProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    proc = PostlineProcess(tmp_path_factory.mktemp("throttle") / "data",
                           env={"POSTLINE_WORKERS": "2", "POSTLINE_RELAY_PROCESSES": "1"}).start()
    yield proc
    proc.stop()


def fresh_get(proc: PostlineProcess, source: str, token: str) -> httpx.Response:
    """One request on a new connection from ``source`` (either API process may take it)."""
    with httpx.Client(base_url=proc.url, transport=httpx.HTTPTransport(local_address=source), timeout=30) as http:
        return http.get("/api/email/services", headers={"Authorization": f"Bearer {token}", "Connection": "close"})


def test_failures_on_both_processes_add_up(two_workers):
    """Ten failures over ten connections, so over both processes (all ten on one has a
    chance of 2 in 1024): the next is refused only if the processes share one count."""
    wrong = "pl_adm_" + "p" * 40
    codes = [fresh_get(two_workers, "127.0.0.7", wrong).status_code for _ in range(10)]
    assert codes == [401] * 10
    for _ in range(4):  # whichever process answers now refuses
        r = fresh_get(two_workers, "127.0.0.7", wrong)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert fresh_get(two_workers, "127.0.0.9", wrong).status_code == 401  # another address: its own count


def smtp_auth(proc: PostlineProcess, source: str, key: str) -> tuple[int, bytes]:
    """AUTH PLAIN on a new connection from ``source``: the reply (loopback: no TLS needed)."""
    port = int(proc.env["POSTLINE_SUBMISSION_PORT"])
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as s:
        s.ehlo("client.test")
        reply = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0postline\0{key}".encode()).decode())
        if reply[0] != 421:  # 421 closes the connection: nothing to quit
            s.docmd("QUIT")
        return reply


def test_wrong_smtp_auth_across_many_connections_gets_421_after_the_limit(two_workers):
    wrong = "rs_eml_" + "s" * 32
    replies = [smtp_auth(two_workers, "127.0.0.8", wrong) for _ in range(10)]
    assert [code for code, _ in replies] == [535] * 10
    code, text = smtp_auth(two_workers, "127.0.0.8", wrong)
    assert code == 421 and text.startswith(b"4.7.0 too many failed authentications; try again in ")
    # the HTTP doors count the same address: its failures were SMTP's, its block is everyone's
    assert fresh_get(two_workers, "127.0.0.8", "pl_adm_" + "r" * 40).status_code == 429
    # ... but a right key still signs in from it: it cannot be guessed, and a NAT's other
    # clients must not be locked out by one with a stale key
    api = Api(two_workers.url)
    key = api.create_key(api.create_service("behind-the-same-nat"))
    assert [smtp_auth(two_workers, "127.0.0.8", key)[0] for _ in range(4)] == [235] * 4  # on either process
    assert smtp_auth(two_workers, "127.0.0.8", wrong)[0] == 421


@pytest.mark.parametrize("token,why", [("a", "too short"), ("ab" * 20, "too easy to guess")])
def test_a_weak_admin_token_stops_the_real_entry_point(tmp_path, token, why):
    env = {**os.environ, "POSTLINE_DATA_DIR": str(tmp_path), "POSTLINE_ADMIN_TOKEN": token}
    done = subprocess.run([sys.executable, "-m", "services.cli", "api"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "POSTLINE_ADMIN_TOKEN" in lines[0] and why in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert len(token) == 1 or token not in lines[0]  # the value is not echoed
