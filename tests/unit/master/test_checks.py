"""The master's check scheduler without sockets: which checks each member gets, and what
happens to a member's state when its checks are configured away."""

from __future__ import annotations

import ipaddress
import selectors

from hbfork.core.config import loads
from hbfork.core.hcheck import CHECK_FAILING, R_STATUS, Summary
from hbfork.core.members import CHECK_FAILED, ELIGIBLE, Registry
from hbfork.master.checks import Checks, Track

BASE = """
[proxy]
listen = ["127.0.0.1:8080"]
[heartbeat]
listen = "127.0.0.1:27999"
discover = true
"""
POOLS = BASE + """
[[pool]]
name = "a"
hcmethod = "head"
members = ["127.0.0.2:80", "127.0.0.3:80"]
[[pool]]
name = "b"
hcmethod = "tcp"
discover = true
[[pool.member]]
address = "127.0.0.3:80"
[[pool.member]]
address = "127.0.0.4:80"
hcmethod = "head"
"""


def make(text: str) -> tuple[Checks, Registry, list[int]]:
    config = loads(text, "hb.toml")
    registry = Registry.from_config(config)
    published: list[int] = []
    checks = Checks(selectors.DefaultSelector(), registry, lambda: published.append(1))
    checks.configure(config)
    return checks, registry, published


def test_each_member_gets_each_distinct_check_of_its_pools():
    checks, registry, _ = make(POOLS)
    by_address = {str(m.endpoint): checks.checks_of(m) for m in registry}
    assert [c.settings.hcmethod for c in by_address["127.0.0.2:80"]] == ["head"]
    assert [c.settings.hcmethod for c in by_address["127.0.0.3:80"]] == ["head", "tcp"]
    # 127.0.0.4's own hcmethod "head" equals pool a's check: one check, not two.
    assert by_address["127.0.0.4:80"] == by_address["127.0.0.2:80"]
    discovered = registry._add(ipaddress.ip_address("127.0.0.9"), 80, False)
    assert [c.settings.hcmethod for c in checks.checks_of(discovered)] == ["tcp"]
    assert checks.active


def test_no_checks_configured_means_nothing_to_do():
    checks, _, _ = make(BASE + '[[pool]]\nname = "default"\ndiscover = true\n')
    assert not checks.active and checks.next_wakeup() == 0
    checks.tick(10**9)
    assert not checks.tracks


def test_a_check_configured_away_releases_its_member():
    checks, registry, published = make(BASE + '[[pool]]\nname = "default"\ndiscover = true\n'
                                       'members = ["127.0.0.2:80"]\n')
    member = next(iter(registry))
    member.first_seen = member.last_seen = 10**9
    member.ready = 5
    registry.set_check(member.slot, member.uid, Summary(CHECK_FAILING, 0, 1, R_STATUS, 500),
                       10**9)
    assert member.reason == CHECK_FAILED
    head = loads(POOLS, "hb.toml").pools[0].hcheck
    checks.tracks[(member.uid, head)] = Track(head)  # as if a head check had been configured
    checks.tick(10**9)  # no check is configured for it any more: its state is cleared
    assert not checks.tracks and member.reason == ELIGIBLE and published
