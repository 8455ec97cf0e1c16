"""hbfork.master.reresolve: names resolved again every resolve_interval; a change hands a
resolver with the new addresses (for a reload), a failure keeps the last ones and is said once."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from hbfork.core.config import Config, loads
from hbfork.master.reresolve import Reresolver

TEXT = '[proxy]\nresolve_interval = 5\n[[member]]\naddress = "10.0.0.1:80"\n'


def config(interval: float = 5, **names: tuple[str, ...]) -> Config:
    loaded = loads(TEXT.replace("5", str(interval)))
    return replace(loaded, names=tuple((k.replace("_", "-"), v) for k, v in names.items()))


class FakeDNS:
    def __init__(self, answers: dict[str, list[str] | OSError]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        answer = self.answers[host]
        if isinstance(answer, OSError):
            raise answer
        return list(answer)


def test_nothing_before_the_interval_nor_when_off():
    dns = FakeDNS({"app": ["10.0.0.2"]})
    r = Reresolver(dns)
    cfg = config(app=("10.0.0.1",))
    assert r.check(cfg, 100.0) is None  # the interval starts with the config
    assert r.check(cfg, 104.9) is None and dns.asked == []
    off = config(0, app=("10.0.0.1",))
    r = Reresolver(dns)
    assert r.check(off, 100.0) is None and r.check(off, 10_000.0) is None and dns.asked == []


@pytest.mark.parametrize(("last", "now", "changed"), [
    (("10.0.0.1",), ["10.0.0.1"], False),
    (("10.0.0.1", "10.0.0.2"), ["10.0.0.2", "10.0.0.1"], False),   # another order: no change
    (("10.0.0.1",), ["10.0.0.2"], True),
    (("10.0.0.1",), ["10.0.0.1", "fd00::1"], True),
    ((), ["10.0.0.3"], True),                                      # an optional member back
])
def test_a_change_hands_the_new_addresses(last, now, changed):
    dns = FakeDNS({"app": now, "db": ["10.1.0.1"]})
    r = Reresolver(dns)
    cfg = config(app=last, db=("10.1.0.1",))
    r.check(cfg, 0.0)
    fresh = r.check(cfg, 5.0)
    assert (fresh is not None) is changed
    if fresh is not None:
        assert fresh("app") == now and fresh("db") == ["10.1.0.1"]
    assert sorted(dns.asked) == ["app", "db"]
    assert r.check(cfg, 9.9) is None and len(dns.asked) == 2  # next time: 10.0


def test_a_failure_keeps_the_last_addresses_and_is_said_once(caplog):
    dns = FakeDNS({"app": OSError("Name or service not known"), "db": ["10.1.0.9"]})
    r = Reresolver(dns)
    cfg = config(app=("10.0.0.1",), db=("10.1.0.1",))
    r.check(cfg, 0.0)
    with caplog.at_level(logging.INFO, "hbfork.master"):
        fresh = r.check(cfg, 5.0)  # db moved: a reload, with app's last address
        assert fresh is not None and fresh("app") == ["10.0.0.1"] and fresh("db") == ["10.1.0.9"]
        r.check(cfg, 10.0)
        dns.answers["app"] = []   # no address is a failure too
        r.check(cfg, 15.0)
    said = [m for m in caplog.messages if "cannot resolve member host name 'app'" in m]
    assert len(said) == 1 and "keeping its last addresses" in said[0]
    dns.answers["app"] = ["10.0.0.1"]
    with caplog.at_level(logging.INFO, "hbfork.master"):
        r.check(cfg, 20.0)
    assert any("'app' resolves again" in m for m in caplog.messages)


def test_a_new_config_restarts_the_interval_with_its_names():
    dns = FakeDNS({"app": ["10.0.0.2"], "web": ["10.2.0.1"]})
    r = Reresolver(dns)
    r.check(config(app=("10.0.0.1",)), 0.0)
    reloaded = config(web=("10.2.0.1",))
    assert r.check(reloaded, 4.0) is None  # a reload at 4.0: due at 9.0
    assert r.check(reloaded, 8.9) is None and dns.asked == []
    assert r.check(reloaded, 9.0) is None and dns.asked == ["web"]


def test_a_fixed_resolver_asks_the_system_for_names_it_does_not_know():
    dns = FakeDNS({"app": ["10.0.0.2"], "new": ["10.9.0.1"]})
    r = Reresolver(dns)
    cfg = config(app=("10.0.0.1",))
    r.check(cfg, 0.0)
    fresh = r.check(cfg, 5.0)
    assert fresh is not None and fresh("new") == ["10.9.0.1"]


def test_load_records_what_each_name_resolved_to(tmp_path):
    from hbfork.system.configfile import load
    path = tmp_path / "hb.toml"
    path.write_text('[[pool]]\nname = "default"\nmembers = ["app:8080", "10.0.0.5:80"]\n'
                    '[[pool.member]]\naddress = "gone:80"\noptional = true\n')
    dns = FakeDNS({"app": ["10.0.0.1", "10.0.0.2"], "gone": OSError("no such name")})
    loaded = load(path, dns)
    assert dict(loaded.names) == {"app": ("10.0.0.1", "10.0.0.2"), "gone": ()}
    assert [str(m.address) for m in loaded.pool("default").members] == [
        "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.5:80"]
