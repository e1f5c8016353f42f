"""The fast path for plain addresses (shared/addresses.py ``_plain_address``) answers exactly
what email-validator answers, on addresses generated to stress it."""
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from hypothesis import given, settings, strategies as st

from shared.addresses import AddressError, _PLAIN, _parse_mailbox_fully, _plain_address, parse_mailbox

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
label = st.text("aZ09-", min_size=1, max_size=70)
role_name = st.builds(lambda name, upper: "".join(c.upper() if u else c for c, u in zip(name, upper)),
                      st.sampled_from(CASE_INSENSITIVE_MAILBOX_NAMES), st.lists(st.booleans(), min_size=10, max_size=10))
local = st.one_of(st.lists(st.text(ATEXT, min_size=1, max_size=30), min_size=1, max_size=4).map(".".join), role_name)
tld = st.one_of(st.text("aZq", min_size=1, max_size=65), st.sampled_from(["local", "onion", "arpa", "invalid", "test",
                                                                          "localhost", "COM", "c0m", "123"]))
near_plain = st.builds(lambda lp, labels, t: f"{lp}@{'.'.join(labels + [t])}", local,
                       st.lists(label, min_size=1, max_size=5), tld)


def same_answer(value: str) -> None:
    fast = _plain_address(value)
    if fast is None:
        return
    assert _parse_mailbox_fully(value) == ("", fast), value


@settings(max_examples=400, deadline=None)
@given(st.from_regex(_PLAIN, fullmatch=True))
def test_every_address_the_fast_path_takes_is_one_email_validator_accepts_the_same(value: str) -> None:
    same_answer(value)


@settings(max_examples=1000, deadline=None)
@given(near_plain)
def test_addresses_at_the_fast_paths_edges_get_email_validators_answer(value: str) -> None:
    """Long labels and local parts, dashes anywhere, special-use and numeric TLDs, uppercase,
    RFC 2142 role names in any case (email-validator lowercases those)."""
    same_answer(value)


def test_the_fast_path_takes_plain_addresses_and_lowercases_their_domain_only() -> None:
    assert parse_mailbox("Jane.Doe+tag@Mail.Example.COM") == ("", "Jane.Doe+tag@mail.example.com")
    assert _plain_address("user@example.com") == "user@example.com"


def test_role_names_are_lowercased_as_email_validator_does() -> None:
    assert parse_mailbox("Postmaster@Example.com") == ("", "postmaster@example.com")
    assert parse_mailbox("SALES@example.com") == ("", "sales@example.com")


def test_addresses_email_validator_refuses_are_refused_still() -> None:
    for value in ("a@ab--cd.com", "a@b.local", "a@x.onion", "a..b@c.com", "a@b.123",
                  f"a@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 63}.com"):
        assert _plain_address(value) is None, value
        try:
            parse_mailbox(value)
        except AddressError:
            continue
        raise AssertionError(f"{value} was accepted")
