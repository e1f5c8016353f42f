"""Mailbox providers by MX host suffix (shared/providers.py): a Google Workspace domain is
Google, the most specific suffix wins, an operator's entries add or replace providers, an
unknown MX is its own per-domain provider, and a malformed setting is refused by name."""
from __future__ import annotations

import pytest

from shared.providers import parse_setting, provider_of, suffix_table
from shared.settings import load_settings


def test_mx_hosts_map_to_their_provider():
    assert provider_of("alt2.aspmx.l.google.com.", "acme.com") == "google"
    assert provider_of("acme-com.mail.protection.outlook.com", "acme.com") == "microsoft"
    assert provider_of("mta7.am0.yahoodns.net", "yahoo.com") == "yahoo"
    assert provider_of("mx.acme.com", "Acme.com") == "other:acme.com"
    assert provider_of(None, "gmail.com") == "other:gmail.com"  # no MX known (DNS failed): by domain
    assert provider_of("notgoogle.com", "x.com") == "other:x.com"  # a suffix matches whole labels only


def test_operator_entries_add_and_replace():
    table = suffix_table(parse_setting("acme=mx.acme.net; google=corp-google.example"))
    assert provider_of("in1.mx.acme.net", "a.com", table) == "acme"
    assert provider_of("x.corp-google.example", "a.com", table) == "google"
    assert provider_of("aspmx.l.google.com", "a.com", table) == "other:a.com"  # google's suffixes were replaced
    assert load_settings(providers="acme=mx.acme.net").provider_table == suffix_table({"acme": ("mx.acme.net",)})


@pytest.mark.parametrize("bad", ["acme", "=mx.acme.net", "acme="])
def test_a_malformed_entry_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="provider entry"):
        parse_setting(bad)
