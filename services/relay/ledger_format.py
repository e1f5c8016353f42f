"""The delivery ledger's line format: what survives a torn write.

Current lines: ``<crc32, 8 hex> <JSON list>`` — ``[email_id, recipient, status, code, reply,
host, time, path]``, the checksum taken over the JSON text; ``path`` (``{"source_ip": …,
"tls": {…}}`` or null) is absent from lines written before it. A line whose checksum does not match
(torn by a kill or a full disk mid-write, or a page of zeros after a power loss) is skipped:
its outcome was never acknowledged, so its request was never committed and comes again.

Older files still read: bare JSON lines (no checksum; a torn one does not parse) and the
first format, ``email_id recipient status`` (no SMTP reply)."""
from __future__ import annotations

import json
import zlib

Fields = list  # [email_id, recipient, status, code, reply, host, time, path]


def encode(row: Fields) -> bytes:
    """One ledger line, newline included."""
    body = json.dumps(row, separators=(",", ":"))
    return f"{zlib.crc32(body.encode()):08x} {body}\n".encode()


def parse(line: str) -> Fields | None:
    """The fields of one line of any format, or None for a line to skip (torn, corrupt, empty)."""
    if len(line) > 9 and line[8] == " " and line[9] == "[":
        crc, body = line[:8], line[9:]
        try:
            if int(crc, 16) != zlib.crc32(body.encode()):
                return None
        except ValueError:
            return None
        return _json_row(body)
    if line.startswith("["):  # the JSON lines written before checksums
        return _json_row(line)
    parts = line.split(" ")
    return [*parts, None, None, None, None, None] if len(parts) == 3 else None


def _json_row(text: str) -> Fields | None:
    try:
        row = json.loads(text)
    except ValueError:
        return None
    if not isinstance(row, list) or len(row) not in (7, 8):
        return None
    return row if len(row) == 8 else [*row, None]
