"""Throttling of failed credentials: dashboard sign-ins, admin tokens, API keys, SMTP AUTH
(docs/security.md, "Throttling").

Failures are counted per source address (an IPv6 address by its /64: one host holds a whole
/64) and per account (the name presented: a key's or token's public prefix ``rs_eml_AbCd``,
later a user name), on the service-wide counters of ``shared/quota`` — embedded: the
log's SQLite file, exact across the API processes; Kafka: gossiped on ``postline.quota`` —
so every process and replica sees the same counts. Rules:

- **Address**: ``ADDRESS.failures`` free failures per ``ADDRESS.window``; each counted
  failure after that blocks the address for ``first``·2^k seconds from that failure (1 s,
  2 s, 4 s … at most ``cap``, 15 min). A blocked address is refused before its credential is
  checked — a right one too, or a block would not slow guessing — except a key Postline
  generated (API keys, personal tokens: services/api/auth.py ``checked``), which cannot be
  guessed and works behind a shared address; refused attempts are not counted, so a block
  always ends.
- **Account**: looser and shorter (more free failures, blocks of at most a minute), and it
  refuses only addresses that have failed themselves within the address window. An
  attacker can make an account's block last, but a real user on an address without recent
  failures is never refused by it: nobody can lock a user out.
- A block is logged once, when it starts (one line: door, address or account, length,
  failures; never the credential).

Successful requests pay one read (embedded: one index probe of the log's file; Kafka:
memory); the account is read only for an address with recent failures."""
from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

from shared import events as ev
from shared.quota import Quota, Take, Window

log = logging.getLogger(__name__)
Door = Literal["dashboard", "admin_token", "api_key", "smtp"]
UNLIMITED = 2**62  # failures are always counted: the rules below read the counts
MAX_NAME = 254     # longest account name kept (an email address's limit)


@dataclass(frozen=True)
class Rule:
    kind: Literal["address", "account"]
    failures: int   # free failures within ``window`` before the first block
    window: int     # seconds a failure is counted
    first: float    # seconds of the first block; each further counted failure doubles it
    cap: float      # the longest block

    @property
    def scope(self) -> tuple[str, int, int]:
        return f"auth-{self.kind}", self.window, 1  # 1-second slots: a block's start to the second

    def block_for(self, failures: int) -> float:
        """Seconds a key with ``failures`` counted failures stays blocked after the last one."""
        if failures < self.failures:
            return 0.0
        return min(self.cap, self.first * 2 ** min(failures - self.failures, 32))


ADDRESS = Rule("address", failures=10, window=3600, first=1, cap=900)
ACCOUNT = Rule("account", failures=20, window=900, first=1, cap=60)


@dataclass(frozen=True)
class Blocked:
    """A refusal: who is blocked and for how many more (whole) seconds."""
    kind: Literal["address", "account"]
    retry_after: int

    @property
    def message(self) -> str:
        who = "this address" if self.kind == "address" else "this account"
        return f"too many failed attempts from {who}; try again in {self.retry_after} s"


@lru_cache(maxsize=4096)  # a pure function of the peer's address, parsed ~5 µs: asked by every send
def source_of(host: str | None) -> str:
    """The address a client is counted under: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(str(host or "").split("%", 1)[0])
    except ValueError:
        return str(host or "unknown")[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def account_of(credential: str) -> str:
    """The account a presented key or token is counted under: its public part (the first 11
    characters, as the dashboard lists keys), never enough of it to be a secret. A person's
    account is their user name (``Throttle`` takes any name)."""
    return credential[:11]


def _printable(name: str) -> str:
    """A presented name as keys and log lines hold it: printable, bounded (it is the caller's text)."""
    return "".join(ch if ch.isprintable() and not ch.isspace() else "?" for ch in name[:MAX_NAME])


class Throttle:
    """One per API process, over the process's ``Quota`` (``ApiContext.throttle``).
    ``free_failures``: an address's (POSTLINE_AUTH_FREE_FAILURES); an account gets twice as many."""

    def __init__(self, quota: Quota, free_failures: int = ADDRESS.failures) -> None:
        self.quota = quota
        self.address = replace(ADDRESS, failures=free_failures)
        self.account = replace(ACCOUNT, failures=2 * free_failures)

    def check(self, address: str, account: str | None) -> Blocked | None:
        """Whether a credential from ``address`` for ``account`` is refused now, before it is
        checked. Counts nothing; a read, never blocks."""
        failed, blocked = self._state(self.address, _key("address", address))
        if blocked is not None or not failed or account is None:
            return blocked
        return self._state(self.account, _key("account", _printable(account)))[1]

    async def failed(self, door: Door, address: str, account: str | None) -> None:
        """Count one failed credential; log a block it starts. Raises as the log's append does."""
        account = _printable(account) if account is not None else None
        takes = [Take(_key("address", address), 1, (_window(self.address),))]
        if account is not None:
            takes.append(Take(_key("account", account), 1, (_window(self.account),)))
        await self.quota.admit(ev.Topic.QUOTA, takes, [])  # counts only: no record is appended
        for rule, who in ((self.address, address), (self.account, account)):
            if who is None:
                continue
            failures, _ = self.quota.tally(_key(rule.kind, who), rule.scope)
            if seconds := rule.block_for(failures):  # every counted failure past the free ones starts a block
                log.warning("auth throttle: %s %s blocked for %d s after %d failed attempts (door %s)",
                            rule.kind, who, seconds, failures, door)

    def _state(self, rule: Rule, key: str) -> tuple[int, Blocked | None]:
        failures, newest = self.quota.tally(key, rule.scope)
        seconds = rule.block_for(failures)
        if not seconds or newest is None:
            return failures, None
        left = (newest + 1) + seconds - time.time()  # from the end of the last failure's slot
        return failures, Blocked(rule.kind, math.ceil(left)) if left > 0 else None


def _key(kind: str, who: str) -> str:
    return f"auth~{kind}~{who}"


def _window(rule: Rule) -> Window:
    name, length, slot = rule.scope
    return Window(name, length, slot, UNLIMITED)
