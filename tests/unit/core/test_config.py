"""hbfork.config: defaults, the reference table, and errors that name file, key and problem."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import fields

import pytest

from hbfork.core import config, hcheck, pool_settings, settings, tls_settings
from hbfork.core.addresses import Endpoint, parse_endpoint
from hbfork.core.config import describe, loads, reference_rows
from hbfork.core.errors import ConfigError
from hbfork.core.settings import MAX_WORKERS
from hbfork.core.values import key_of

PATH = "/etc/hbfork/front.toml"
MEMBER = '[[member]]\naddress = "10.0.0.11:8080"\n'


def load(text: str) -> config.Config:
    return loads(text, PATH)


def error(text: str, key: str, *problem_parts: str) -> ConfigError:
    """Load `text`, expect a ConfigError naming PATH and `key`, whose problem has every part."""
    with pytest.raises(ConfigError) as info:
        load(text)
    err = info.value
    assert err.path == PATH
    assert err.key == key
    for part in problem_parts:
        assert part in err.problem, (part, err.problem)
    # The message a user sees carries all three.
    message = str(err)
    assert message.startswith(f"{PATH}: {key}: " if key else f"{PATH}: ")
    assert err.problem in message
    return err


def ep(text: str) -> Endpoint:
    return parse_endpoint(text)


# --- defaults


def test_defaults_of_a_minimal_file() -> None:
    cfg = load(MEMBER)
    assert cfg.path == PATH
    p, hb, http = cfg.proxy, cfg.heartbeat, cfg.http
    assert p.listen == (ep("127.0.0.1:8080"),)
    assert p.mode == "http"
    assert 1 <= p.workers <= MAX_WORKERS
    assert p.workers == max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    assert (p.shutdown_timeout, p.retry, p.max_connections) == (30.0, 10.0, 10000)
    assert p.user is None and p.pidfile is None and p.allow_root is False
    assert hb.listen == ep("239.0.0.1:27999") and hb.listen.is_multicast
    assert (hb.max_members, hb.max_age, hb.forget_after) == (256, 10.0, 30.0)
    assert hb.discover is False and hb.default_port == 80 and hb.allow == ()
    assert hb.key_file is None and hb.require_signature is False and hb.storage is None
    assert (http.connect_timeout, http.response_timeout, http.retries) == (3.0, 60.0, 2)
    assert cfg.status.listen == ep("127.0.0.1:8081")
    assert cfg.log.level == "info" and cfg.log.access is None
    (member,) = cfg.members
    assert member.address == ep("10.0.0.11:8080")
    assert (member.lbset, member.name, member.max_ready, member.disabled) == (0, "", 0, False)
    assert member.label == "10.0.0.11:8080"


def test_design_example_loads() -> None:
    cfg = load("""
[proxy]
listen = ["127.0.0.1:8080"]
mode = "http"
workers = "auto"
shutdown_timeout = 30
retry = 10
max_connections = 10000

[heartbeat]
listen = "239.0.0.1:27999"
max_members = 256
max_age = 10
forget_after = 30
discover = false
default_port = 80
allow = []

[[member]]
address = "10.0.0.11:8080"

[http]
connect_timeout = 3
response_timeout = 60
retries = 2

[status]
listen = "127.0.0.1:8081"

[log]
level = "info"
""")
    assert cfg == load(MEMBER)


def test_values_are_typed() -> None:
    cfg = load(MEMBER + """
[proxy]
listen = ["127.0.0.1:9000", "[::1]:9000"]
mode = "tcp"
workers = 3
retry = 0
[heartbeat]
listen = "127.0.0.1:27999"
allow = ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]
max_age = 2.5
[status]
listen = ""
""")
    assert cfg.proxy.listen == (ep("127.0.0.1:9000"), ep("[::1]:9000"))
    assert cfg.proxy.mode == "tcp" and cfg.proxy.workers == 3 and cfg.proxy.retry == 0.0
    assert not cfg.heartbeat.listen.is_multicast
    assert cfg.heartbeat.allow == (ipaddress.ip_network("10.0.0.0/8"),
                                   ipaddress.ip_network("fd00::/8"),
                                   ipaddress.ip_network("192.168.1.7/32"))
    assert cfg.heartbeat.max_age == 2.5
    assert cfg.status.listen is None


def test_listen_accepts_a_single_string() -> None:
    cfg = load(MEMBER + '[proxy]\nlisten = "127.0.0.1:9001"\n')
    assert cfg.proxy.listen == (ep("127.0.0.1:9001"),)


def test_ipv6_listen_address() -> None:
    cfg = load(MEMBER + '[proxy]\nlisten = ["[::1]:8080"]\n')
    (listener,) = cfg.proxy.listen
    assert listener.ip == ipaddress.IPv6Address("::1")
    assert listener.port == 8080
    assert listener.family == socket.AF_INET6
    assert str(listener) == "[::1]:8080"


@pytest.mark.parametrize(("address", "default_port", "expected"), [
    ("10.0.0.5", None, "10.0.0.5:80"),
    ("10.0.0.5", 8000, "10.0.0.5:8000"),
    ("10.0.0.5:9000", 8000, "10.0.0.5:9000"),
    ("[fd00::5]", 8000, "[fd00::5]:8000"),
    ("fd00::5", None, "[fd00::5]:80"),
    ("[fd00::5]:81", None, "[fd00::5]:81"),
    ("::ffff:10.0.0.6", None, "10.0.0.6:80"),
])
def test_member_address_without_port_gets_default_port(address: str, default_port: int | None,
                                                        expected: str) -> None:
    text = f'[[member]]\naddress = "{address}"\n'
    if default_port is not None:
        text += f"[heartbeat]\ndefault_port = {default_port}\n"
    (member,) = load(text).members
    assert str(member.address) == expected


def test_discover_without_members_is_fine() -> None:
    cfg = load("[heartbeat]\ndiscover = true\n")
    assert cfg.members == () and cfg.heartbeat.discover


def test_workers_auto_explicitly() -> None:
    assert load(MEMBER + '[proxy]\nworkers = "auto"\n').proxy.workers == load(MEMBER).proxy.workers


def test_control_socket_off_without_pidfile() -> None:
    assert load(MEMBER).control_socket is None


# --- errors: file, key, problem


def test_invalid_toml() -> None:
    error("[proxy\n", "", "not valid TOML")


def test_unknown_section_suggests_a_close_one() -> None:
    error(MEMBER + "[proxi]\n", "[proxi]", "unknown key", "did you mean 'proxy'?")


def test_unknown_key_suggests_a_close_one() -> None:
    error(MEMBER + '[proxy]\nlisen = ["127.0.0.1:1"]\n', "[proxy] lisen", "unknown key",
          "did you mean 'listen'?")
    error(MEMBER + "[heartbeat]\nmax_agee = 3\n", "[heartbeat] max_agee",
          "did you mean 'max_age'?")


def test_unknown_key_without_a_close_one() -> None:
    err = error(MEMBER + "[log]\nzzzzzz = 1\n", "[log] zzzzzz", "unknown key")
    assert "did you mean" not in err.problem


def test_unknown_member_key() -> None:
    error(MEMBER + "lbst = 1\n", "[[member]] #1 lbst", "unknown key", "did you mean 'lbset'?")


def test_member_key_names_the_member_number() -> None:
    error(MEMBER + '[[member]]\naddress = "10.0.0.12:8080"\nlbset = -1\n',
          "[[member]] #2 lbset", "from 0 to 65535")


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('[proxy]\nworkers = "many"', "[proxy] workers", "expected an integer"),
    ("[proxy]\nworkers = 2.0", "[proxy] workers", "expected an integer"),
    ("[proxy]\nmax_connections = true", "[proxy] max_connections", "expected an integer"),
    ('[proxy]\nmode = "udp"', "[proxy] mode", "expected one of 'http', 'tcp'"),
    ("[proxy]\nlisten = 8080", "[proxy] listen", "expected a list"),
    ("[proxy]\nlisten = []", "[proxy] listen", "no client-facing listener"),
    ("[proxy]\nuser = 0", "[proxy] user", "expected a string"),
    ('[proxy]\nallow_root = "yes"', "[proxy] allow_root", "expected true or false"),
    ('[heartbeat]\nmax_age = "10"', "[heartbeat] max_age", "expected a number of seconds"),
    ("[heartbeat]\nmax_age = true", "[heartbeat] max_age", "expected a number of seconds"),
    ('[heartbeat]\ndiscover = "yes"', "[heartbeat] discover", "expected true or false"),
    ("[heartbeat]\ndiscover = 1", "[heartbeat] discover", "expected true or false"),
    ('[heartbeat]\nallow = "10.0.0.0/8"', "[heartbeat] allow", "expected a list"),
    ("[heartbeat]\nallow = [10]", "[heartbeat] allow", "expected a CIDR string"),
    ('[heartbeat]\nallow = ["10.0.0.0/33"]', "[heartbeat] allow", "is not a CIDR"),
    ("[heartbeat]\nlisten = 27999", "[heartbeat] listen", "expected a string"),
    ("[log]\nlevel = 3", "[log] level", "expected one of"),
    ('[log]\nlevel = "verbose"', "[log] level", "expected one of"),
    ("[status]\nlisten = false", "[status] listen", "expected a string"),
    ("[[member]]\naddress = 5", "[[member]] #1 address", "expected a string"),
    ('[[member]]\naddress = "10.0.0.1"\nname = 5', "[[member]] #1 name", "expected a string"),
    ('[[member]]\naddress = "10.0.0.1"\ndisabled = "no"', "[[member]] #1 disabled",
     "true or false"),
])
def test_wrong_types(text: str, key: str, problem: str) -> None:
    if "[[member]]" not in text:
        text = MEMBER + text
    error(text + "\n", key, problem)


@pytest.mark.parametrize(("text", "key"), [
    ("proxy = 5", "[proxy]"),
    ("heartbeat = [1]", "[heartbeat]"),
])
def test_section_that_is_not_a_table(text: str, key: str) -> None:
    error(text + "\n" + MEMBER, key, "must be a table")


@pytest.mark.parametrize("text", [
    "member = 5\n",
    '[member]\naddress = "10.0.0.1:80"\n',
])
def test_member_must_be_an_array_of_tables(text: str) -> None:
    error(text, "[[member]]", "array of tables")


def test_member_entry_must_be_a_table() -> None:
    error("member = [1]\n", "[[member]] #1", "must be a table")


def test_member_address_is_required() -> None:
    error('[[member]]\nname = "a"\n', "[[member]] #1 address", "is required")


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[proxy]\nworkers = 0", "[proxy] workers", "from 1 to 64"),
    ("[proxy]\nworkers = 65", "[proxy] workers", "from 1 to 64"),
    ("[proxy]\nmax_connections = 0", "[proxy] max_connections", "from 1 to 1000000"),
    ("[proxy]\nshutdown_timeout = 0", "[proxy] shutdown_timeout", "more than 0"),
    ("[proxy]\nshutdown_timeout = -1", "[proxy] shutdown_timeout", "more than 0"),
    ("[proxy]\nretry = -1", "[proxy] retry", "at most 3600"),
    ("[proxy]\nretry = 3601", "[proxy] retry", "at most 3600"),
    ("[heartbeat]\nmax_members = 0", "[heartbeat] max_members", "from 1 to 65535"),
    ("[heartbeat]\nmax_members = 65536", "[heartbeat] max_members", "from 1 to 65535"),
    ("[heartbeat]\nmax_age = 0", "[heartbeat] max_age", "more than 0"),
    ("[heartbeat]\nmax_age = 3601\nforget_after = 4000", "[heartbeat] max_age", "at most 3600"),
    ("[heartbeat]\ndefault_port = 0", "[heartbeat] default_port", "from 1 to 65535"),
    ("[heartbeat]\ndefault_port = 65536", "[heartbeat] default_port", "from 1 to 65535"),
    ("[heartbeat]\nmax_ready = -1", "[heartbeat] max_ready", "from 0 to 2147483647"),
    ("[heartbeat]\nmax_ready = 2147483648", "[heartbeat] max_ready", "from 0 to 2147483647"),
    ("[http]\nretries = 101", "[http] retries", "from 0 to 100"),
    ("[http]\nconnect_timeout = 601", "[http] connect_timeout", "at most 600"),
    ("[[member]]\naddress = \"10.0.0.1\"\nlbset = 65536", "[[member]] #1 lbset", "0 to 65535"),
])
def test_out_of_range(text: str, key: str, problem: str) -> None:
    if "[[member]]" not in text:
        text = MEMBER + text
    error(text + "\n", key, problem)


@pytest.mark.parametrize(("text", "value"), [
    ("[proxy]\nworkers = 1", 1),
    ("[proxy]\nworkers = 64", 64),
    ("[heartbeat]\nmax_members = 65535", 65535),
    ("[heartbeat]\ndefault_port = 65535", 65535),
])
def test_range_ends_are_accepted(text: str, value: int) -> None:
    cfg = load(MEMBER + text + "\n")
    section, rest = text.split("\n")
    key = rest.split(" = ")[0]
    assert getattr(getattr(cfg, section.strip("[]")), key) == value


@pytest.mark.parametrize(("first", "second", "extra"), [
    ("10.0.0.1:80", "10.0.0.1:80", ""),
    ("10.0.0.1:80", "10.0.0.1", ""),                         # default port 80
    ("10.0.0.1:8000", "10.0.0.1", "[heartbeat]\ndefault_port = 8000\n"),
    ("10.0.0.1:80", "[::ffff:10.0.0.1]:80", ""),              # IPv4-mapped is the same host
    ("[fd00::1]:80", "[fd00:0::1]:80", ""),
])
def test_duplicate_member(first: str, second: str, extra: str) -> None:
    text = f'[[member]]\naddress = "{first}"\n[[member]]\naddress = "{second}"\n' + extra
    error(text, "[[member]] #2 address", "is already member #1")


def test_same_ip_other_port_is_not_a_duplicate() -> None:
    cfg = load('[[member]]\naddress = "10.0.0.1:80"\n[[member]]\naddress = "10.0.0.1:81"\n')
    assert [m.address.port for m in cfg.members] == [80, 81]


def test_no_members_and_no_discovery() -> None:
    error("", "[[member]]", "no members", "discover = false")
    error("[heartbeat]\ndiscover = false\n", "[[member]]", "nothing to balance over")


def test_forget_after_less_than_max_age() -> None:
    error(MEMBER + "[heartbeat]\nmax_age = 20\nforget_after = 15\n", "[heartbeat] forget_after",
          "(15) must not be less than max_age (20)")
    # max_age raised alone runs into the default forget_after (30)
    error(MEMBER + "[heartbeat]\nmax_age = 31\n", "[heartbeat] forget_after", "max_age (31)")


def test_forget_after_equal_to_max_age_is_fine() -> None:
    hb = load(MEMBER + "[heartbeat]\nmax_age = 20\nforget_after = 20\n").heartbeat
    assert hb.max_age == hb.forget_after == 20.0


def test_more_members_than_table_slots() -> None:
    text = "".join(f'[[member]]\naddress = "10.0.0.{i}:80"\n' for i in range(1, 4))
    error(text + "[heartbeat]\nmax_members = 2\n", "[heartbeat] max_members",
          "is 2 but 3 members are listed")


@pytest.mark.parametrize(("address", "problem"), [
    ("localhost:8080", "host names are not resolved"),
    ("example.com:8080", "host names are not resolved"),
    ("999.1.1.1:80", "is not an IP address"),
    ("127.0.0.1", "has no port"),
    ("::1:8080", "has no port"),          # bare IPv6: the port would be ambiguous
    ("127.0.0.1:0", "port must be a number from 1 to 65535"),
    ("127.0.0.1:65536", "port must be a number from 1 to 65535"),
    ("127.0.0.1:http", "port must be a number"),
    ("127.0.0.1:", "port must be a number"),
    ("127.0.0.1:-1", "port must be a number"),
    ("[::1", "unclosed '['"),
    ("[::1]8080", "expected ':port' after ']'"),
    ("[localhost]:80", "host names are not resolved"),
    ("", "expected an address like"),
])
def test_bad_listen_addresses(address: str, problem: str) -> None:
    error(MEMBER + f'[proxy]\nlisten = ["{address}"]\n', "[proxy] listen", problem)


@pytest.mark.parametrize(("address", "problem"), [
    ("backend1:8080", "host names are not resolved"),
    ("backend1", "host names are not resolved"),
    ("10.0.0.1:0", "port must be a number"),
    ("10.0.0.1:99999", "port must be a number"),
    ("[fd00::1]x", "expected ':port'"),
])
def test_bad_member_addresses(address: str, problem: str) -> None:
    error(f'[[member]]\naddress = "{address}"\n', "[[member]] #1 address", problem)


def test_bad_heartbeat_listen() -> None:
    error(MEMBER + '[heartbeat]\nlisten = "239.0.0.1"\n', "[heartbeat] listen", "has no port")
    error(MEMBER + '[heartbeat]\nlisten = "mcast:27999"\n', "[heartbeat] listen",
          "host names are not resolved")


def test_same_listen_address_twice() -> None:
    error(MEMBER + '[proxy]\nlisten = ["127.0.0.1:80", "127.0.0.1:80"]\n', "[proxy] listen",
          "same address twice")


def test_status_listen_clashes_with_proxy_listen() -> None:
    error(MEMBER + '[proxy]\nlisten = ["127.0.0.1:8081"]\n', "[status] listen",
          "127.0.0.1:8081 is also a [proxy] listen address")


def test_require_signature_needs_a_key_file() -> None:
    error(MEMBER + "[heartbeat]\nrequire_signature = true\n", "[heartbeat] require_signature",
          "needs [heartbeat] key_file")
    error(MEMBER + "require_signature = true\n", "[[member]] require_signature",
          "needs [heartbeat] key_file")
    cfg = load(MEMBER + '[heartbeat]\nrequire_signature = true\nkey_file = "hb.key"\n')
    assert cfg.heartbeat.require_signature and cfg.heartbeat.key_file == "hb.key"


def test_source_must_be_a_file() -> None:
    error(MEMBER + '[heartbeat]\nsource = "udp:1.2.3.4"\n', "[heartbeat] source", "file:PATH")
    error(MEMBER + '[heartbeat]\nsource = "file:"\n', "[heartbeat] source", "file:PATH")
    assert load(MEMBER + '[heartbeat]\nsource = "file:hb.dat"\n').heartbeat.source == "file:hb.dat"


# --- the reference table and the summary


def _all_settings() -> set[tuple[str, str]]:
    out = set()
    tables = [*settings.SECTIONS.items(), ("member", settings.MemberSettings),
              ("pool", pool_settings.PoolSettings), ("pool", hcheck.HcheckSettings),
              ("pool.member", pool_settings.PoolMemberSettings),
              ("route", pool_settings.RouteSettings),
              ("listen", tls_settings.ListenSettings),
              ("certificate", tls_settings.CertificateSettings)]
    for name, cls in tables:
        out |= {(name, key_of(f)) for f in fields(cls) if f.metadata["help"]}
    return out


def test_reference_rows_cover_every_setting_once() -> None:
    rows = reference_rows()
    keys = [(section, key) for section, key, _, _ in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == _all_settings()
    for section, key, shown, help_text in rows:
        assert shown, (section, key)
        assert help_text and help_text[0] != " ", (section, key)


def test_reference_rows_show_design_defaults() -> None:
    shown = {(s, k): d for s, k, d, _ in reference_rows()}
    assert shown["proxy", "workers"] == '"auto"'
    assert shown["proxy", "listen"] == '["127.0.0.1:8080"]'
    assert shown["proxy", "retry"] == "10"
    assert shown["heartbeat", "max_age"] == "10"
    assert shown["heartbeat", "forget_after"] == "30"
    assert shown["heartbeat", "discover"] == "false"
    assert shown["heartbeat", "allow"] == "[]"
    assert shown["member", "address"] == "(required)"
    assert shown["status", "listen"] == '"127.0.0.1:8081"'


POOL = '[[pool]]\nname = "p"\nmembers = ["10.0.0.12:8080"]\n'
ROUTE = '[[route]]\npath = "/"\npool = "p"\n'
TABLES = {"pool": (POOL, lambda c: c.pool("p")),
          "pool.member": ('[[pool]]\nname = "p"\n[[pool.member]]\naddress = "10.0.0.12:8080"\n',
                          lambda c: c.pool("p").members[0]),
          "route": (POOL + ROUTE, lambda c: c.routes[0]),
          "listen": ('[[listen]]\naddress = "127.0.0.1:8443"\n', lambda c: c.listens[0]),
          "certificate": ('[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\n'
                          '[[certificate]]\ncert = "x.pem"\n', lambda c: c.certificates[0])}


@pytest.mark.parametrize(("section", "key", "shown"),
                         [(s, k, d) for s, k, d, _ in reference_rows() if not d.startswith("(")])
def test_shown_default_loads_as_the_default(section: str, key: str, shown: str) -> None:
    """Writing the reference's default (docs/configuration.md) into a file gives the same value
    as leaving the key out. (A default shown in parentheses describes where the value comes
    from.)"""
    if section in TABLES:
        base, part = TABLES[section]
        explicit = part(load(MEMBER + base + f"{key} = {shown}\n"))
        implicit = part(load(MEMBER + base))
        key = "passes" if key == "pass" else key
        if key.startswith("hc"):  # the hc* keys are a group of their own (core.hcheck)
            explicit, implicit = explicit.hcheck, implicit.hcheck
    elif section == "member":
        explicit = load(MEMBER + f"{key} = {shown}\n").members[0]
        implicit = load(MEMBER).members[0]
    else:
        explicit = getattr(load(MEMBER + f"[{section}]\n{key} = {shown}\n"), section)
        implicit = getattr(load(MEMBER), section)
    assert getattr(explicit, key) == getattr(implicit, key)


def test_describe_mentions_the_essentials() -> None:
    cfg = load("""
[proxy]
listen = ["127.0.0.1:9000", "[::1]:9000"]
mode = "tcp"
workers = 3
[heartbeat]
listen = "239.0.0.1:27999"
discover = true
allow = ["10.0.0.0/8"]
key_file = "hb.key"
require_signature = true
[[member]]
address = "10.0.0.11:8080"
[[member]]
address = "10.0.0.12:8080"
lbset = 1
name = "spare"
disabled = true
""")
    text = describe(cfg)
    assert PATH in text
    assert "127.0.0.1:9000, [::1]:9000" in text
    assert "mode tcp" in text and "3 workers" in text
    assert "heartbeat:  239.0.0.1:27999 (multicast group)" in text
    assert "max_age 10s" in text and "256 slots" in text and "discover on" in text
    assert "allow 10.0.0.0/8" in text and "signed (required)" in text
    assert "status:     127.0.0.1:8081" in text
    assert "members:    2 static + discovered" in text
    assert "  - 10.0.0.11:8080 lbset 0" in text
    assert "  - 10.0.0.12:8080 lbset 1 (spare) disabled" in text


def test_describe_lists_listen_blocks_with_their_options() -> None:
    text = describe(load(MEMBER + '[[listen]]\naddress = "0.0.0.0:80"\nredirect_https = true\n'
                                  '[[listen]]\naddress = "0.0.0.0:443"\ntls = true\nhsts = 600\n'
                                  '[[certificate]]\ncert = "c.pem"\n'))
    assert "listen:     0.0.0.0:80 (to https:443), 0.0.0.0:443 (tls, hsts 600s)  (mode" in text


def test_describe_unicast_no_status() -> None:
    text = describe(load(MEMBER + '[heartbeat]\nlisten = "127.0.0.1:27999"\n'
                                  '[status]\nlisten = ""\n'))
    assert "heartbeat:  127.0.0.1:27999;" in text
    assert "multicast" not in text and "discover off" in text
    assert "status:     off" in text
    assert "members:    1 static\n" in text + "\n"


def test_default_control_socket_is_skipped_when_its_path_is_too_long():
    from hbfork.core.config import loads

    deep = "/tmp/" + "d" * 120 + "/hbfork.pid"
    config = loads(f'[proxy]\npidfile = "{deep}"\n[heartbeat]\ndiscover = true\n', "c.toml")
    assert config.control_socket is None
    short = loads('[proxy]\npidfile = "/run/h.pid"\n[heartbeat]\ndiscover = true\n', "c.toml")
    assert short.control_socket == "/run/h.pid.ctl"


def test_configured_control_socket_too_long_is_a_config_error():
    import pytest

    from hbfork.core.config import loads
    from hbfork.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        loads(f'[proxy]\ncontrol_socket = "/tmp/{"x" * 120}.sock"\n'
              '[heartbeat]\ndiscover = true\n', "c.toml")
    assert "[proxy] control_socket" in str(err.value) and "c.toml" in str(err.value)


def test_heartbeat_http_path_and_listeners() -> None:
    assert load(MEMBER).heartbeat.http_path is None
    cfg = load('[proxy]\nlisten = ["127.0.0.1:8080", "127.0.0.1:8090"]\n' + MEMBER +
               '[heartbeat]\nhttp_path = "/HeartbeatListener"\nhttp_listen = ["127.0.0.1:8090"]\n')
    assert cfg.heartbeat.http_path == "/HeartbeatListener"
    assert cfg.heartbeat.http_listen == (ep("127.0.0.1:8090"),)
    assert "POST /HeartbeatListener" in describe(cfg)
    error(MEMBER + '[heartbeat]\nhttp_path = "HeartbeatListener"\n', "[heartbeat] http_path",
          "expected a path")
    error(MEMBER + '[heartbeat]\nhttp_listen = ["127.0.0.1:8080"]\n',
          "[heartbeat] http_listen", "needs [heartbeat] http_path")
    error(MEMBER + '[heartbeat]\nhttp_path = "/hb"\nhttp_listen = ["127.0.0.1:9999"]\n',
          "[heartbeat] http_listen", "127.0.0.1:9999 is not a client listener")
    error('[proxy]\nmode = "tcp"\n' + MEMBER + '[heartbeat]\nhttp_path = "/hb"\n',
          "[heartbeat] http_path", "mode = \"http\"")
    error('[heartbeat]\ndiscover = true\nhttp_path = "/hb"\n', "[heartbeat] http_path",
          "need [heartbeat] allow")
    assert load('[heartbeat]\ndiscover = true\nhttp_path = "/hb"\nallow = ["10.0.0.0/8"]\n'
                ).heartbeat.http_path == "/hb"


@pytest.mark.parametrize(("text", "problem"), [
    ("-1", "at most 3600"), ("4000", "at most 3600"), ('"1s"', "seconds"),
])
def test_queue_fresh_offset_is_seconds_from_0_to_an_hour(text: str, problem: str) -> None:
    error(MEMBER + f"[balance]\nqueue_fresh_offset = {text}\n", "[balance] queue_fresh_offset",
          problem)


def test_queue_fresh_offset_defaults_to_arrival_order_and_a_pool_may_set_its_own() -> None:
    assert load(MEMBER).balance.queue_fresh_offset == 0.0
    cfg = load(MEMBER + '[[pool]]\nname = "p"\nmembers = ["10.0.0.12:8080"]\n'
               "queue_fresh_offset = 2.5\n")
    assert next(p for p in cfg.pools if p.name == "p").queue_fresh_offset == 2.5
