"""[[pool]] and [[pool.member]]: the default pool, members shared by pools, and the errors."""

from __future__ import annotations

import pytest

from hbfork.core.addresses import parse_endpoint
from hbfork.core.config import loads
from hbfork.core.errors import ConfigError

APP = """
[[pool]]
name = "app"
stickysession = "JSESSIONID|jsessionid"
nofailover = true
retry = 30
connect_timeout = 1.5
[[pool.member]]
address = "10.0.0.11:8080"
route = "node1"
[[pool.member]]
address = "10.0.0.12:8080"
route = "node2"
lbset = 1
[[pool.member]]
address = "10.0.0.13:8080"
route = "spare"
standby = true
"""


def test_single_pool_configs_are_the_pool_default() -> None:
    config = loads('[[member]]\naddress = "10.0.0.11:8080"\nroute = "n1"\nlbset = 2\n')
    (pool,) = config.pools
    assert pool.name == "default"
    assert [(m.address, m.route, m.lbset) for m in pool.members] == \
        [(parse_endpoint("10.0.0.11:8080"), "n1", 2)]
    assert config.routes == ()
    assert config.tcp_pool is pool


def test_a_pool_named_default_sets_its_options() -> None:
    config = loads('[[member]]\naddress = "10.0.0.11:8080"\n[[pool]]\nname = "default"\n'
                   'stickysession = "ROUTEID"\nmembers = ["10.0.0.12:8080"]\n')
    (pool,) = config.pools
    assert pool.stickysession == "ROUTEID"
    assert [str(m.address) for m in pool.members] == ["10.0.0.11:8080", "10.0.0.12:8080"]


def test_pool_members_and_their_per_pool_settings() -> None:
    config = loads(APP)
    pool = config.pool("app")
    assert pool.sticky_names == ("JSESSIONID", "jsessionid")
    assert pool.nofailover and pool.retry == 30 and pool.connect_timeout == 1.5
    assert pool.response_timeout is None and pool.retries is None
    tiers = [(m.route, m.tier) for m in pool.members]
    assert tiers == [("node1", 0), ("node2", 2), ("spare", 1)]
    assert [str(m.address) for m in config.static_members] == \
        ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"]


def test_one_address_in_two_pools_is_one_member() -> None:
    config = loads(APP + '[[pool]]\nname = "api"\n[[pool.member]]\naddress = "10.0.0.11:8080"\n'
                         'route = "a1"\nlbset = 3\n')
    assert len(config.static_members) == 3
    assert config.pool("api").members[0].route == "a1"


def test_sticky_cookie_is_read_as_stickysession() -> None:
    config = loads('[[pool]]\nname = "p"\nmembers = ["10.0.0.11:8080"]\n'
                   'sticky_cookie = "ROUTEID"\n')
    assert config.pool("p").sticky_names == ("ROUTEID", "ROUTEID")


def test_discover_pool() -> None:
    config = loads('[[pool]]\nname = "dyn"\ndiscover = true\n')
    assert config.discovering and config.discover_pool == "dyn"
    config = loads('[heartbeat]\ndiscover = true\n')
    assert [p.name for p in config.pools] == ["default"] and config.discover_pool == "default"


@pytest.mark.parametrize(("text", "key", "problem"), [
    (APP + '[[pool]]\nname = "app"\nmembers = ["10.0.0.14:1"]\n', "[[pool]] #2 name",
     "is already pool #1"),
    ('[[pool]]\nname = "p"\nmembers = ["10.0.0.11:1"]\n[[pool.member]]\naddress = '
     '"10.0.0.11:1"\n', "[[pool]] 'p' member #2 address", "already member #1"),
    ('[[pool]]\nname = "p"\n[[pool.member]]\naddress = "10.0.0.11:1"\nroute = "r"\n'
     '[[pool.member]]\naddress = "10.0.0.12:1"\nroute = "r"\n', "[[pool]] 'p' member #2 route",
     "'r' is already the route of 10.0.0.11:1"),
    ('[[pool]]\nname = "bad name"\nmembers = ["10.0.0.11:1"]\n', "[[pool]] #1 name",
     "letters, digits"),
    ('[[pool]]\nmembers = ["10.0.0.11:1"]\n', "[[pool]] #1 name", "is required"),
    ('[[pool]]\nname = "a"\nmembers = ["10.0.0.11:1"]\n[[pool]]\nname = "p"\n',
     "[[pool]] 'p' members", "is empty"),
    ('[[pool]]\nname = "p"\nmembers = ["nohost"]\n', "[[pool]] 'p' member #1 address",
     "not an IP address"),
    ('[[pool]]\nname = "p"\nmembers = ["10.0.0.11:1"]\nstickysession = "a|b|c"\n',
     "[[pool]] #1 stickysession", "COOKIE|URLPARAM"),
    ('[[pool]]\nname = "p"\nmembers = ["10.0.0.11:1"]\nstickysessionsep = ".."\n',
     "[[pool]] #1 stickysessionsep", "one character"),
    ('[[pool]]\nname = "p"\n[[pool.member]]\naddress = "10.0.0.11:1"\nroute = "a b"\n',
     "[[pool]] 'p' member #1 route", "without spaces"),
    ('[[pool]]\nname = "p"\nmembers = ["10.0.0.11:1"]\nsticky_cookie = "R"\n'
     'stickysession = "JSESSIONID"\n', "[[pool]] 'p' sticky_cookie", "must read it"),
    ('[[pool]]\nname = "p"\nmembers = ["10.0.0.11:1"]\nsticky_cookie = "R"\n'
     'sticky_cookie_samesite = "None"\n', "[[pool]] 'p' sticky_cookie_samesite",
     "sticky_cookie_secure"),
    ('[[pool]]\nname = "a"\n[[pool.member]]\naddress = "10.0.0.11:1"\nname = "x"\n'
     '[[pool]]\nname = "b"\n[[pool.member]]\naddress = "10.0.0.11:1"\nname = "y"\n',
     "[[pool]] 'b' member 10.0.0.11:1 name", "one address is one member"),
    ('[[pool]]\nname = "a"\ndiscover = true\n[[pool]]\nname = "b"\ndiscover = true\n',
     "[[pool]] discover", "only one pool"),
    ('[[pool]]\nname = "a"\nmembers = ["10.0.0.11:1"]\nbogus = 1\n', "[[pool]] #1 bogus",
     "unknown key"),
])
def test_pool_errors_name_file_key_and_problem(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(text, "front.toml")
    assert (info.value.path, info.value.key) == ("front.toml", key)
    assert problem in info.value.problem


def test_tcp_mode_needs_one_pool() -> None:
    with pytest.raises(ConfigError) as info:
        loads('[proxy]\nmode = "tcp"\n[[pool]]\nname = "a"\nmembers = ["10.0.0.11:1"]\n'
              '[[pool]]\nname = "b"\nmembers = ["10.0.0.12:1"]\n')
    assert "TCP mode balances one pool" in info.value.problem
