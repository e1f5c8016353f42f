"""Stopping a process the tests (or the bench) started."""
from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM, then SIGKILL when ``proc`` has not exited within ``grace`` seconds; returns its
    exit code once it has exited (reaped, no zombie). A process already gone is only reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
