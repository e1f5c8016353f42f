"""A server that answers 421 closes the connection (RFC 5321 §3.8): the relay still reports
that 421 — at the greeting, to a pipelined MAIL, to one RCPT at a time — so the provider's
throttling reaches the shaper (services/relay/shaping/replies.py) instead of becoming a
"connection closed" that no back-off sees. A real asyncio SMTP server speaks the lines."""
from __future__ import annotations

import asyncio

import pytest

from services.relay.outcome import from_exception
from services.relay.senders.smtp_client import SmtpError, connect
from services.relay.shaping.replies import classify

BUSY = b"421 4.7.0 too many connections, try later\r\n"


async def closing_server(pipelining: bool, refuse_at: bytes | None):
    """Greets (or refuses with 421 when ``refuse_at`` is None), then answers 250 until a
    command starting with ``refuse_at``, which gets 421 and the connection closed."""
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if refuse_at is None:
            writer.write(BUSY)
        else:
            writer.write(b"220 mx.test ESMTP\r\n")
            while line := await reader.readline():
                if line.upper().startswith(b"EHLO"):
                    writer.write(b"250-mx.test\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 8BITMIME\r\n")
                elif line.upper().startswith(refuse_at):
                    writer.write(BUSY)
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        await writer.drain()
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


@pytest.mark.parametrize("pipelining, refuse_at", [(True, b"MAIL"), (False, b"MAIL"), (False, b"RCPT TO:<BOB")])
async def test_a_421_then_close_during_a_transaction_is_reported_for_every_recipient(pipelining, refuse_at):
    server = await closing_server(pipelining, refuse_at)
    try:
        conn = await connect("127.0.0.1", server.sockets[0].getsockname()[1], timeout=5)
        replies = await conn.transaction(b"a@acme.test", [b"ann@example.com", b"bob@example.com"], b"Subject: x\r\n\r\nx\r\n.\r\n")
        assert [code for code, _ in replies] == [421, 421] and not conn.usable
        assert classify(*replies[0]) == "throttle"
    finally:
        server.close()


async def test_a_421_greeting_keeps_its_code_for_the_shaper():
    server = await closing_server(True, None)
    try:
        with pytest.raises(SmtpError) as refused:
            await connect("127.0.0.1", server.sockets[0].getsockname()[1], timeout=5)
        result = from_exception(refused.value, "mx.test", connecting=True)
        assert result.status == "deferred" and result.connect_error and result.smtp_code == 421
        assert classify(result.smtp_code, result.smtp_reply) == "throttle"
    finally:
        server.close()
