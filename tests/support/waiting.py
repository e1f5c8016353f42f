"""Waiting on a condition with a deadline, instead of sleeping and hoping.

``until`` polls a check; ``caught_up`` is the barrier for "nothing more arrives" assertions:
a marker message sent afterwards has been delivered, so the relay has consumed past what
was appended before it (partitions are consumed round by round by one relay group)."""
from __future__ import annotations

import time


def until(check, timeout: float = 20.0, interval: float = 0.05, what: str = "the condition"):
    """Call ``check`` until it returns something truthy, and return that; ``AssertionError``
    naming ``what`` (and the last value seen) when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def caught_up(api, key: str, sink, sender: str = "hello@acme.test", to: str = "bob@example.com",
              timeout: float = 30.0) -> None:
    """Send a marker through the API and wait until ``sink`` has it: what the relay was given
    before the marker has been handled by then, so an absence asserted after this is real."""
    r = api.send(key, {"from": sender, "to": to, "subject": "barrier", "text": "marker"})
    assert r.status_code == 200, r.text
    marker = f"<{r.json()['id']}@".encode()
    until(lambda: any(marker in m.data for m in list(sink.received)), timeout, what="the barrier message")
