"""Dashboard passwords (services/api/manage/credentials.py): an address with no user is
checked against a dummy hash made with the product's own argon2id parameters, so a sign-in
costs the same whether or not the address exists, and is refused."""
from __future__ import annotations

from services.api.manage import credentials


def test_the_dummy_hash_has_the_hashers_parameters():
    assert not credentials.HASHER.check_needs_rehash(credentials.DUMMY_HASH)


async def test_an_unknown_address_is_refused_whatever_the_password():
    assert await credentials.password_ok(None, "any password at all") is False
    assert await credentials.password_ok(await credentials.hash_password("right password"), "right password") is True
