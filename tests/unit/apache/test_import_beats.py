"""import-apache: mod_heartmonitor's `<Location PATH> SetHandler heartbeat` (where Tomcat's
TcpSender posts) becomes [heartbeat] http_path, its `Require ip` the [heartbeat] allow."""

from __future__ import annotations

import ipaddress

import pytest

from hbfork.apache.beats import apache_network
from tests.unit.apache.importing import comments, notes
from tests.unit.apache.importing import load as translate_config

FRONT = """\
Listen 127.0.0.1:8080
<Proxy balancer://tomcats>
    BalancerMember http://10.0.0.11:8080
    BalancerMember http://10.0.0.12:8080
    ProxySet lbmethod=heartbeat
</Proxy>
ProxyPass /HeartbeatListener !
ProxyPass / balancer://tomcats/
<Location /HeartbeatListener>
    SetHandler heartbeat
    Require ip 10.0.0 192.168.1.0/24
    Require local
</Location>
"""


def test_set_handler_heartbeat_becomes_http_path_and_allow() -> None:
    text, config = translate_config(FRONT)
    hb = config.heartbeat
    assert hb.http_path == "/HeartbeatListener"
    assert [str(n) for n in hb.allow] == ["10.0.0.0/24", "192.168.1.0/24", "127.0.0.0/8",
                                          "::1/128"]
    assert str(hb.listen) == "127.0.0.1:27999"  # beats come by POST only: UDP on loopback
    assert "SetHandler heartbeat" in comments(text)
    assert notes(text) == []


def test_require_all_granted_leaves_allow_open_and_other_rules_are_noted() -> None:
    text, config = translate_config(FRONT.replace("    Require local\n",
                                                  "    Require all granted\n"
                                                  "    Require host tomcat.example.com\n"))
    assert config.heartbeat.http_path == "/HeartbeatListener"
    assert config.heartbeat.allow == ()
    assert any("Require host tomcat.example.com" in n and "addresses only" in n
               for n in notes(text))


def test_require_elsewhere_is_still_noted() -> None:
    text, config = translate_config(FRONT + "<Location /admin>\n    Require ip 10.9.0.0/16\n"
                                            "</Location>\n")
    assert [str(n) for n in config.heartbeat.allow] != [] and \
        "10.9.0.0/16" not in [str(n) for n in config.heartbeat.allow]
    assert any("Require ip 10.9.0.0/16" in n and "access rules" in n for n in notes(text))


def test_a_second_heartbeat_location_and_one_outside_a_location_are_noted() -> None:
    text, config = translate_config(FRONT + "<Location /hb2>\n    SetHandler heartbeat\n"
                                            "</Location>\n<LocationMatch ^/x>\n"
                                            "    SetHandler heartbeat\n</LocationMatch>\n")
    assert config.heartbeat.http_path == "/HeartbeatListener"
    found = notes(text)
    assert any("/HeartbeatListener is the one translated" in n for n in found)
    assert any("SetHandler heartbeat" in n and "one <Location PATH>" in n for n in found)


@pytest.mark.parametrize(("text", "network"), [
    ("10", "10.0.0.0/8"), ("10.1", "10.1.0.0/16"), ("10.1.2.", "10.1.2.0/24"),
    ("10.1.2.3", "10.1.2.3/32"), ("10.0.0.0/255.0.0.0", "10.0.0.0/8"), ("fd00::/8", "fd00::/8"),
    ("::1", "::1/128")])
def test_require_ip_forms(text, network) -> None:
    assert apache_network(text) == ipaddress.ip_network(network)


@pytest.mark.parametrize("bad", ["tomcat.example.com", "10.x", "1.2.3.4.5", ""])
def test_require_ip_junk(bad) -> None:
    with pytest.raises(ValueError):
        apache_network(bad)
