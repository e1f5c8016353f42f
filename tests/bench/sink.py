"""A minimal SMTP sink process for benchmarks: accepts everything, keeps nothing."""
import asyncio
import sys

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 OK"


if __name__ == "__main__":
    c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]), data_size_limit=50 * 1024 * 1024)
    c.start()
    print("ready", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        c.stop()
