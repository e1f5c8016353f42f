"""SMTP sinks for the relay benchmark, run as a separate process: accept everything, keep
nothing, count deliveries: the recipients of every completed transaction (one message to ten
recipients in one transaction counts ten, as do ten one-recipient transactions, so MTAs that
batch recipients and those that don't compare alike).

``lean`` (default) plays the receiving MTA the way Postfix's ``smtp-sink`` does for MTA
benchmarks: a small asyncio protocol on uvloop that speaks enough SMTP (EHLO with
PIPELINING, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and costs ~0.1 ms of
CPU per message, so the number measures the relay rather than the sink sharing its two
cores. ``aiosmtpd`` is the full Python server the tests use (~0.8 ms per message).

``python -m tests.bench.sink PORT [KIND] [COUNT_FILE]``: with COUNT_FILE, the number of
messages accepted so far is written there (every 20 ms while it changes), so a benchmark in
another process can tell when everything has arrived without the sink keeping anything."""
import asyncio
import os
import sys
import threading
import time

RECEIVED = [0]


def report_count(path: str | None) -> None:
    """Write RECEIVED to ``path`` (atomically, by rename) whenever it changed; runs in a thread."""
    if not path:
        return

    def loop() -> None:
        last = -1
        while True:
            if RECEIVED[0] != last:
                last = RECEIVED[0]
                with open(path + ".tmp", "w") as f:
                    f.write(str(last))
                os.replace(path + ".tmp", path)
            time.sleep(0.02)
    threading.Thread(target=loop, daemon=True).start()


class LeanSmtp(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf, self.in_data, self.rcpts = transport, bytearray(), False, 0
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data):
        self.buf += data
        out = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end == -1:
                    break
                del self.buf[:end + 5]
                self.in_data = False
                RECEIVED[0] += self.rcpts
                self.rcpts = 0
                out.append(b"250 2.0.0 OK\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end == -1:
                break
            verb = bytes(self.buf[:4]).upper()
            del self.buf[:end + 2]
            if verb == b"EHLO":
                out.append(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n")
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.t.write(b"".join(out))
                self.t.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                if verb == b"RCPT":
                    self.rcpts += 1
                elif verb in (b"MAIL", b"RSET"):
                    self.rcpts = 0
                out.append(b"250 OK\r\n")
        if out:
            self.t.write(b"".join(out))


async def lean(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(LeanSmtp, "127.0.0.1", port, backlog=256)
    print("ready", flush=True)
    await server.serve_forever()


def aiosmtpd(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            RECEIVED[0] += len(envelope.rcpt_tos)
            return "250 2.0.0 OK"

    c = Controller(Handler(), hostname="127.0.0.1", port=port, data_size_limit=50 * 1024 * 1024)
    c.start()
    print("ready", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        c.stop()


if __name__ == "__main__":
    port, kind = int(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "lean")
    report_count(sys.argv[3] if len(sys.argv) > 3 else None)
    if kind == "lean":
        import uvloop

        uvloop.run(lean(port))
    else:
        aiosmtpd(port)
