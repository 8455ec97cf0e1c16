"""[[pool]] protocol = "ajp" and its ajp_* keys: read, defaulted, and refused with file, key
and problem when wrong."""

from __future__ import annotations

import pytest

from hbfork.core.config import loads
from hbfork.core.errors import ConfigError

AJP = '[[pool]]\nname = "t"\nmembers = ["10.0.0.11:8009"]\nprotocol = "ajp"\n'


def test_ajp_pool_keys() -> None:
    config = loads(AJP + 'ajp_secret = "s"\najp_ping = 1.5\najp_packet_size = 65536\n', "f")
    pool = config.pool("t")
    assert (pool.protocol, pool.ajp_secret, pool.ajp_ping, pool.ajp_packet_size) == \
        ("ajp", "s", 1.5, 65536)
    plain = loads(AJP.replace('protocol = "ajp"\n', ""), "f").pool("t")
    assert (plain.protocol, plain.ajp_ping, plain.ajp_packet_size) == ("http", 0, 8192)


@pytest.mark.parametrize(("extra", "key", "problem"), [
    ('ajp_packet_size = 4096\n', "[[pool]] #1 ajp_packet_size", "8192"),
    ('ajp_packet_size = 70000\n', "[[pool]] #1 ajp_packet_size", "65536"),
    ('ajp_ping = -1\n', "[[pool]] #1 ajp_ping", ""),
    ('tls = true\n', "[[pool]] 't' tls", "AJP over TLS"),
    ('proxy_protocol = "v1"\n', "[[pool]] 't' proxy_protocol", "client's address"),
    ('hcmethod = "get"\n', "[[pool]] 't' hcmethod", "tcp"),
])
def test_ajp_pool_errors(extra: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(AJP + extra, "front.toml")
    assert (info.value.path, info.value.key) == ("front.toml", key)
    assert problem in info.value.problem


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        loads(AJP.replace('"ajp"', '"fcgi"'), "front.toml")
    assert info.value.key == "[[pool]] #1 protocol" and "ajp" in info.value.problem
