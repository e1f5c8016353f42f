"""How long Postline takes to start (``--only startup``): ``postline all`` from the command to
its first ``/readyz`` 200 on a fresh data dir (five processes on this machine's cores), and
the CPU one process spends importing the API and the relay, with the ``.pyc`` files of the
packages and of Postline (``uv sync --compile-bytecode``, ``make bytecode``) and without them:
a private ``PYTHONPYCACHEPREFIX`` holding the standard library's alone (as a Python install
ships it), under ``PYTHONDONTWRITEBYTECODE`` as on this machine."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
RUNS = 3
IMPORTS = {"api": "services.api.app", "relay": "services.relay.runner"}


def _env(compiled: bool, cache: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if not compiled:
        env["PYTHONPYCACHEPREFIX"] = cache  # .pyc looked for only there: the standard library's
    return env


def ready_seconds(env: dict[str, str]) -> float:
    """``postline all`` on a fresh data dir: seconds from the command to ``/readyz`` 200."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        run_env = {**env, "POSTLINE_DATA_DIR": data, "POSTLINE_HTTP_PORT": str(port),
                   "POSTLINE_SUBMISSION_PORT": str(free_port()), "POSTLINE_INBOUND_SMTP_PORT": str(free_port())}
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "all"], cwd=ROOT, env=run_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                        return round(time.monotonic() - start, 2)
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() - start > 120:
                    raise RuntimeError("postline all did not become ready")
                time.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(60)


def import_cpu_seconds(module: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.process_time(); import {module}; print(time.process_time() - t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return round(float(out.stdout), 3)


def run() -> dict:
    subprocess.run([sys.executable, "-m", "compileall", "-q", "services", "shared"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # what `make bytecode` does
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", sysconfig.get_paths()["stdlib"]],
                       env={**os.environ, "PYTHONPYCACHEPREFIX": cache}, stdout=subprocess.DEVNULL, check=False)
        for name, compiled in (("without_pyc", False), ("with_pyc", True)):
            env = _env(compiled, cache)
            out[name] = {"postline_all_ready_s": [ready_seconds(env) for _ in range(RUNS)],
                         **{f"import_{role}_cpu_s": [import_cpu_seconds(m, env) for _ in range(RUNS)]
                            for role, m in IMPORTS.items()}}
    return out
