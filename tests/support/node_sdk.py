"""Resend's Node SDK (npm ``resend``, pinned in tests/sdk/node/package.json) driven from the
tests: each call runs one of tests/sdk/node's scripts, which prints the SDK's ``{data, error}``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "sdk" / "node"


def node_caller(url: str, script: str, default_key: str) -> Callable[..., dict]:
    """``call(case, key=None, **args)``: run ``node <script> <case> '<args>'`` in tests/sdk/node
    against the Postline at ``url`` (Resend's Node SDK pointed at it by ``RESEND_BASE_URL`` only) and return
    the ``{data, error}`` it printed."""
    # a failure, not a skip: `make test` installs both, and a skipped SDK test would hide a gap
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "resend").is_dir():
        pytest.fail("node or the pinned resend package is missing: run `make test-deps`")

    def call(case: str, key: str | None = None, **args) -> dict:
        env = {**os.environ, "RESEND_BASE_URL": url, "RESEND_API_KEY": key or default_key}
        out = subprocess.run(["node", script, case, json.dumps(args)], cwd=NODE_DIR, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    return call
