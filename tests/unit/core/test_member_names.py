"""Members by host name (hbfork.system.resolve), with a fake resolver."""

from __future__ import annotations

import pytest

from hbfork.core.config import from_document
from hbfork.core.errors import ConfigError
from hbfork.core.member_names import resolve_names
from hbfork.system.resolve import system_resolver

NAMES = {"app1.example": ["10.0.0.1"], "both.example": ["10.0.0.2", "fd00::2"]}


def fake(host: str) -> list[str]:
    if host not in NAMES:
        raise OSError(f"[Errno -2] Name or service not known: {host}")
    return NAMES[host]


def test_a_pool_member_by_name_becomes_one_member_per_address():
    doc = {"pool": [{"name": "app", "members": ["app1.example:8080", "10.0.0.9:80",
                                                "both.example:81"]}]}
    assert resolve_names(doc, "f.toml", fake) == []
    config = from_document(doc, "f.toml")
    members = config.pool("app").members
    assert [str(m.address) for m in members] == ["10.0.0.1:8080", "10.0.0.9:80",
                                                 "10.0.0.2:81", "[fd00::2]:81"]
    assert [m.name for m in members] == ["app1.example", "", "both.example", "both.example"]


def test_top_level_members_and_their_own_names():
    doc = {"member": [{"address": "app1.example:80", "name": "one"}]}
    resolve_names(doc, "f.toml", fake)
    assert doc["member"] == [{"address": "10.0.0.1:80", "name": "one"}]


def test_a_name_that_does_not_resolve_names_file_key_and_problem():
    doc = {"pool": [{"name": "app", "member": [{"address": "nowhere.example:80"}]}]}
    with pytest.raises(ConfigError) as info:
        resolve_names(doc, "f.toml", fake)
    text = str(info.value)
    assert "f.toml" in text and "[[pool]] 'app' member #1 address" in text
    assert "nowhere.example" in text and "optional = true" in text


def test_an_optional_member_that_does_not_resolve_is_left_out():
    doc = {"pool": [{"name": "app", "member": [{"address": "nowhere.example:80",
                                                "optional": True},
                                               {"address": "app1.example:80",
                                                "optional": True}]}]}
    warnings = resolve_names(doc, "f.toml", fake)
    assert len(warnings) == 1 and "nowhere.example" in warnings[0]
    assert doc["pool"][0]["member"] == [{"address": "10.0.0.1:80", "name": "app1.example"}]


def test_a_route_needs_a_name_with_one_address():
    doc = {"pool": [{"name": "app", "member": [{"address": "both.example:80", "route": "n1"}]}]}
    with pytest.raises(ConfigError, match="resolves to 2 addresses"):
        resolve_names(doc, "f.toml", fake)


@pytest.mark.parametrize("address", ["10.0.0.1:80", "[::1]:80", "::1", "10.0.0.1", "",
                                     "not a name:80"])
def test_addresses_and_junk_are_left_to_the_validator(address):
    doc = {"pool": [{"name": "app", "members": [address]}]}
    resolve_names(doc, "f.toml", fake)
    assert doc["pool"][0]["members"] == [address]


def test_the_system_resolver_knows_localhost():
    assert "127.0.0.1" in system_resolver("localhost")
