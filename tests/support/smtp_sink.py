"""A real SMTP server (aiosmtpd) on loopback that records what it receives and can be
scripted to answer 2xx/4xx/5xx per recipient or for DATA, stall, or drop mid-DATA."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

from tests.support.broker import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = field(default_factory=time.time)

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


class _Handler:
    def __init__(self, sink: "SmtpSink"):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.data_delay:
            import asyncio

            await asyncio.sleep(self.sink.data_delay)
        if self.sink.drop_data:
            session.transport.close() if hasattr(session, "transport") else server.transport.close()
            return "421 closing"
        reply = self.sink.next_data_reply()
        if reply.startswith("2"):
            with self.sink.lock:
                self.sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return reply


class SmtpSink:
    def __init__(self, data_replies: list[str] | None = None, rcpt_replies: dict[str, str] | None = None,
                 data_delay: float = 0.0, drop_data: bool = False, port: int | None = None):
        self.port = port or free_port()
        self.data_replies = list(data_replies or [])
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.data_delay, self.drop_data = data_delay, drop_data
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     data_size_limit=50 * 1024 * 1024, enable_SMTPUTF8=True)

    def next_data_reply(self) -> str:
        with self.lock:
            if len(self.data_replies) > 1:
                return self.data_replies.pop(0)
            return self.data_replies[0] if self.data_replies else "250 2.0.0 OK queued"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [r for r in self.received if predicate(r)]
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError("the SMTP sink did not receive the expected message in time")

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]
