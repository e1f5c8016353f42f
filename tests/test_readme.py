"""The README's walkthrough runs as pasted against `make run`'s process.

Every ```sh block after "Send your first email" runs, in order, in one bash session —
exactly as written except for what the reader substitutes too: the port (the test's
server listens on a free one) and the admin token placeholder (``pl_adm_...``), which
``make run`` prints on its first start."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = "## Send your first email"


def walkthrough_blocks(readme: str) -> list[str]:
    section = readme.split(WALKTHROUGH, 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def start_make_run(data_dir: Path, port: int) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
    env.update(POSTLINE_DATA_DIR=str(data_dir), POSTLINE_HTTP_PORT=str(port),
               POSTLINE_INBOUND_SMTP_PORT=str(free_port()), POSTLINE_SUBMISSION_PORT=str(free_port()))
    out = data_dir.parent / "make-run.log"
    proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=open(out, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, out


def wait_for_token(proc: subprocess.Popen, out: Path, port: int, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, out.read_text()
        token = re.search(r"Admin token \(shown once[^:]*\): (pl_adm_\S+)", out.read_text())
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if token and ready:
            return token.group(1)
        time.sleep(0.2)
    raise TimeoutError(out.read_text())


def test_readme_walkthrough_runs_as_pasted(tmp_path):
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 3 and "TOKEN=pl_adm_..." in blocks[0]
    port = free_port()
    proc, out = start_make_run(tmp_path / "data", port)
    try:
        token = wait_for_token(proc, out, port)
        script = "\n".join(blocks).replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("pl_adm_...", token)
        run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    lines = run.stdout.strip().splitlines()
    assert "me@example.com is verified" in run.stdout
    assert '"status":"sent"' in run.stdout and '"subject":"Hello"' in run.stdout  # GET /emails/$ID
    assert lines[-1] == "Hello"  # the dev inbox caught the message
    assert run.stderr == ""
    server_log = out.read_text()
    assert '"logger": "postline.access"' in server_log and '"route": "/emails"' in server_log
    assert "AUTH mechanisms" not in server_log  # the bounce listener offers no AUTH and says nothing of it
    assert token not in server_log.split(token, 1)[1]  # printed once in the banner, never logged
    # the banner says where the SMTP listener's CA is (README, "Send over SMTP")
    ca = re.search(r"SSL_CERT_FILE=(\S+)", server_log)
    assert ca and Path(ca.group(1)) == (tmp_path / "data" / "postline-ca.pem").resolve() and Path(ca.group(1)).is_file()
