"""Three real-world style Apache fronts (tests/data/apache/realworld): host-named members,
ws:// and wss:// members, ajp:// members with Tomcat's secret, mod_headers, mod_remoteip,
mod_log_config, mod_heartmonitor's SetHandler, and directives hbfork has no equivalent for.
Imported, no route may be left without a member because of a member's scheme or name, and
every directive that could change what a client or member sees must be either translated or
listed by file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.apache.importing import DATA, notes, translate_file

REALWORLD = DATA / "realworld"
CONFIGS = sorted(REALWORLD.glob("*.conf"))
# Directives these configs use that hbfork does not apply: each must be listed by its line.
NOT_APPLIED = ("AddOutputFilterByType", "ProxyErrorOverride", "ErrorDocument", "ExpiresActive",
               "ExpiresByType", "RewriteRule", "Require ip 10.0.0.0/8")


def directive_lines(path: Path, prefix: str) -> list[int]:
    return [number for number, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip().startswith(prefix)]


def test_there_are_three() -> None:
    assert [p.name for p in CONFIGS] == ["api-gateway.conf", "shop.conf", "tomcat-ajp.conf"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_route_has_members_whatever_their_scheme_or_name(path: Path) -> None:
    text, config = translate_file(path)
    pools = {pool.name: pool for pool in config.pools}
    members = sum(len(pool.members) for pool in pools.values())
    assert members == len(directive_lines(path, "BalancerMember")), text
    proxied = [route for route in config.routes if route.pool]
    assert proxied, text
    for route in proxied:
        assert pools[route.pool].members, (route, text)
    listed = "\n".join(notes(text))
    assert "scheme" not in listed and "no member hbfork can use" not in listed, listed


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_what_is_not_applied_is_listed_by_line(path: Path) -> None:
    text, _ = translate_file(path)
    listed = notes(text)
    for directive in NOT_APPLIED:
        for line in directive_lines(path, directive):
            where = f"({path}:{line})"
            assert any(where in note for note in listed), (directive, line, listed)
    assert re.search(r"# \d+ other directive\(s\) that cannot change what a client", text)


def test_the_shop_keeps_its_headers_log_websockets_and_client_address() -> None:
    text, config = translate_file(REALWORLD / "shop.conf")
    assert 'access_format = "%a %l %u %t \\"%r\\" %>s %b' in text
    assert "X-Forwarded-For" in text and "203.0.113.0/24" in text
    live = next(p for p in config.pools if p.name == "live")
    assert str(live.members[0].address).startswith("198.18.")  # a name, resolved
    assert 'response_headers = ["always set X-Frame-Options SAMEORIGIN"' in text
    assert any(rule.always and rule.name == b"X-Frame-Options"
               for route in config.routes for rule in route.response_headers), text


def test_the_tomcat_front_talks_ajp_and_takes_beats_by_post() -> None:
    text, config = translate_file(REALWORLD / "tomcat-ajp.conf")
    portal = next(p for p in config.pools if p.name == "portal")
    assert portal.protocol == "ajp", text
    assert config.heartbeat.http_path == "/HeartbeatListener"
    assert 'secret = "Ch4ngeMe"' in text
