"""A real OpenID Connect provider for tests: the npm package ``oidc-provider`` (pinned in
tests/sdk/node) run by Debian's node on a loopback port, with one confidential client."""
from __future__ import annotations

import subprocess
import time

import httpx

from tests.support.broker import free_port
from tests.support.node_sdk import NODE_DIR
from tests.support.processes import stop_process

CLIENT_ID, CLIENT_SECRET = "postline", "postline-test-client-secret"


class OidcProvider:
    def __init__(self, redirect_uri: str, log_path: Path):
        self.port = free_port()
        self.redirect_uri, self.log_path = redirect_uri, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, allowed_domains: str) -> dict[str, str]:
        """The POSTLINE_OIDC_* variables that point Postline at this provider."""
        return {"POSTLINE_OIDC_ISSUER": self.issuer, "POSTLINE_OIDC_CLIENT_ID": CLIENT_ID,
                "POSTLINE_OIDC_CLIENT_SECRET": CLIENT_SECRET, "POSTLINE_OIDC_ALLOWED_DOMAINS": allowed_domains}

    def start(self, timeout: float = 30) -> "OidcProvider":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["node", "oidc_provider.mjs", str(self.port), self.redirect_uri, CLIENT_ID,
                                      CLIENT_SECRET], cwd=NODE_DIR, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"oidc-provider not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 10)
