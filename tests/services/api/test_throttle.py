"""Failed credentials are throttled per address and per account (services/api/throttle.py),
in-process over the real embedded log. Each test speaks from its own loopback address, so
the counts of one do not reach another (they share the module's installation)."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest

from services.api.app import asgi_app
from tests.services.api.dashboard.support import csrf_of
from tests.support.inproc import api_runtime, ready_service
from tests.support.postline import ADMIN_TOKEN

SEND = {"from": "hello@acme.test", "to": ["ann@example.com"], "subject": "hi", "text": "hello"}
WRONG_TOKEN = ADMIN_TOKEN[:-4] + "zzzz"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One installation for the module: (its app, a service's key, an event loop)."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    rt, admin = loop.run_until_complete(stack.enter_async_context(api_runtime(tmp_path_factory.mktemp("throttle"))))
    _, key = loop.run_until_complete(ready_service(rt, admin))
    yield asgi_app(rt), key, loop  # as the server runs it: the send fast path in front of the app
    loop.run_until_complete(stack.aclose())
    loop.close()


def client(app, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


async def sign_in_attempt(http: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await http.get("/signin")
    return await http.post("/signin", data={"csrf": csrf_of(form.text), "token": token})


def test_thirty_wrong_sign_ins_are_throttled_and_the_right_one_works_after_the_delay(world, caplog):
    rt, _, loop = world

    async def run():
        async with client(rt, "127.0.0.2") as http:
            answers = [await sign_in_attempt(http, WRONG_TOKEN) for _ in range(30)]
            counted = sum(r.status_code == 401 for r in answers)
            codes = [r.status_code for r in answers]
            assert codes[:10] == [401] * 10  # the free failures
            assert 429 in codes and set(codes) <= {401, 429}
            refused = next(r for r in answers if r.status_code == 429)
            assert int(refused.headers["Retry-After"]) >= 1 and "Too many failed sign-ins" in refused.text
            # one more counted failure after the first block: the next block is longer (2 s)
            await asyncio.sleep(int(answers[-1].headers.get("Retry-After", "0")))
            while (r := await sign_in_attempt(http, WRONG_TOKEN)).status_code == 401:
                counted += 1
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 2
            # the right token is refused too while the address is blocked ...
            right = await sign_in_attempt(http, ADMIN_TOKEN)
            assert right.status_code == 429, "a blocked address must not learn whether a token is right"
            # ... and works once the block is over
            await asyncio.sleep(int(right.headers["Retry-After"]))
            ok = await sign_in_attempt(http, ADMIN_TOKEN)
            assert ok.status_code == 303 and ok.headers["location"] == "/services"
            return counted

    with caplog.at_level(logging.WARNING, logger="services.api.throttle"):
        counted = loop.run_until_complete(run())
    starts = [r.getMessage() for r in caplog.records if "address 127.0.0.2 blocked for" in r.getMessage()]
    # one line per block: the 10th counted failure starts the first, each counted one after a block the next
    assert len(starts) == counted - 9 >= 2 and all("door dashboard" in line for line in starts)
    assert "blocked for 1 s after 10 failed" in starts[0] and "blocked for 2 s after 11 failed" in starts[1]
    assert not any(WRONG_TOKEN in r.getMessage() or ADMIN_TOKEN in r.getMessage() for r in caplog.records)


def test_admin_token_failures_on_the_management_api_are_throttled_per_address(world):
    rt, _, loop = world

    async def run():
        async with client(rt, "127.0.0.3") as attacker, client(rt, "127.0.0.4") as bystander:
            wrong = {"Authorization": "Bearer pl_adm_" + "q" * 40}  # an account of its own
            right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            codes = [(await attacker.get("/api/email/services", headers=wrong)).status_code for _ in range(12)]
            assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
            # the admin token may be one the operator chose: refused unchecked while blocked, the right one
            # too (else a blocked address could go on guessing at any rate)
            r = await attacker.get("/api/email/services", headers=right)
            assert r.status_code == 429 and r.json()["name"] == "too_many_failed_attempts"
            assert int(r.headers["Retry-After"]) >= 1 and "this address" in r.json()["error"]
            # another address is not affected
            assert (await bystander.get("/api/email/services", headers=right)).status_code == 200

    loop.run_until_complete(run())


def test_api_key_failures_are_throttled_on_the_send_api_fast_path_included(world):
    rt, key, loop = world

    async def run():
        async with client(rt, "127.0.0.5") as attacker, client(rt, "127.0.0.6") as bystander:
            wrong = {"Api-Key": "rs_eml_" + "w" * 32}
            codes = [(await attacker.post("/emails", json=SEND, headers=wrong)).status_code for _ in range(11)]
            assert codes == [401] * 10 + [429]
            r = await attacker.post("/emails", json=SEND, headers=wrong)
            assert r.status_code == 429 and r.json()["name"] == "too_many_failed_attempts"
            assert int(r.headers["Retry-After"]) >= 1
            # the right key, as a plain send the fast path would take, works from there too
            assert (await attacker.post("/emails", json=SEND, headers={"Api-Key": key})).status_code == 200
            assert (await bystander.post("/emails", json=SEND, headers={"Api-Key": key})).status_code == 200

    loop.run_until_complete(run())


def test_an_account_block_never_locks_out_a_user_on_a_clean_address(world):
    """Failures against one key prefix spread over many addresses block the account — for
    addresses that failed themselves; the key's owner on a clean address still gets in."""
    rt, key, loop = world
    guess = key[:11] + "x" * 32  # the key's public prefix, a wrong secret

    async def run():
        for i in range(20):  # one failure from each of 20 addresses: no address reaches its limit
            async with client(rt, f"127.0.1.{i + 1}") as http:
                assert (await http.post("/emails", json=SEND, headers={"Api-Key": guess})).status_code == 401
        async with client(rt, "127.0.1.1") as failed_before:
            r = await failed_before.post("/emails", json=SEND, headers={"Api-Key": guess})
            assert r.status_code == 429 and "this account" in r.json()["error"]
            assert (await failed_before.post("/emails", json=SEND, headers={"Api-Key": key})).status_code == 200
        async with client(rt, "127.0.2.1") as owner:
            assert (await owner.post("/emails", json=SEND, headers={"Api-Key": key})).status_code == 200

    loop.run_until_complete(run())


def test_ipv6_clients_are_counted_by_their_64():
    from services.api.throttle import source_of

    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7" and source_of("192.0.2.7") == "192.0.2.7"


def test_password_sign_ins_are_throttled_and_an_attacked_user_still_gets_in(world, monkeypatch):
    """The people door (docs/people-and-access.md): wrong passwords block the address; a
    password spray over many addresses blocks the account only for addresses that failed,
    so the user, on a clean address, signs in."""
    from argon2 import PasswordHasher

    from services.api.manage import credentials
    from services.api.manage.users import user_id_for
    from shared import events as ev

    monkeypatch.setattr(credentials, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    app, _, loop = world
    rt = app.runtime  # the ApiContext of the app the server runs (the fast path in front of FastAPI)
    password, email = "correct horse battery staple", "amy@acme.test"

    async def attempt(address: str, secret: str) -> httpx.Response:
        async with client(app, address) as http:
            form = await http.get("/signin")
            return await http.post("/signin/password", data={"csrf": csrf_of(form.text), "email": email,
                                                             "password": secret, "code": ""})

    async def run():
        await rt.control.save(ev.UserSaved(workspace_id="default", user_id=user_id_for("default", email), email=email,
                                           role="developer", status="active", created_at=ev.utcnow(),
                                           password_hash=await credentials.hash_password(password)))
        codes = [(await attempt("127.0.5.1", "wrong")).status_code for _ in range(11)]
        assert codes == [401] * 10 + [429]
        blocked = await attempt("127.0.5.1", password)
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
        for i in range(9):  # the spray: the account reaches its 20 free failures (10 above)
            assert (await attempt(f"127.0.6.{i + 1}", "guess")).status_code == 401
        assert (await attempt("127.0.6.20", "guess")).status_code == 401
        assert (await attempt("127.0.6.1", password)).status_code == 429  # an address that failed: refused
        ok = await attempt("127.0.7.1", password)  # the user, from a clean address
        assert ok.status_code == 303 and ok.headers["location"] == "/services"

    loop.run_until_complete(run())
