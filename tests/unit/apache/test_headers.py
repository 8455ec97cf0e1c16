"""import-apache: RequestHeader and Header become header rules at the level Apache applies
them (main server -> [http], a vhost's and a Location's -> their routes), and what hbfork
cannot do is listed by file:line with the reason."""

from __future__ import annotations

import pytest

from hbfork.core.config import loads
from tests.unit.apache.importing import load, notes

BASE = """<Proxy balancer://app>
BalancerMember http://10.0.0.1:8080
</Proxy>
"""

CONFIG = BASE + """RequestHeader set X-Env prod
Header always set X-Frame-Options DENY
Header unset Server
Header onsuccess append Cache-Control no-store
<VirtualHost *:80>
ServerName www.example.com
RequestHeader setifempty X-Site www
Header always edit* Set-Cookie "(?i);\\s*secure" ""
ProxyPass / balancer://app/
<Location /api>
RequestHeader add X-Api "v1 v2"
Header merge Vary Accept
ProxyPass balancer://app/api
</Location>
</VirtualHost>
"""


def test_rules_land_where_apache_applies_them_and_load() -> None:
    text, _ = load(CONFIG)
    config = loads(text)
    assert [r.value for r in config.http.request_headers] == [b"prod"]
    assert [(r.action, r.always) for r in config.http.response_headers] == [
        ("set", True), ("unset", False), ("append", False)]
    api = next(r for r in config.routes if r.path == "/api")
    root = next(r for r in config.routes if r.path == "/")
    # the vhost's first, then the Location's (Apache's merge order)
    assert [(r.action, r.value) for r in api.request_headers] == [
        ("setifempty", b"www"), ("add", b"v1 v2")]
    assert [r.action for r in api.response_headers] == ["edit*", "merge"]
    assert [r.action for r in root.request_headers] == ["setifempty"]
    assert root.response_headers[0].always
    assert not notes(text)


@pytest.mark.parametrize(("directive", "reason"), [
    ("RequestHeader set X-A 1 env=HTTPS", "environment variables"),
    ('Header set X-A 1 "expr=%{REQUEST_STATUS} == 200"', "expressions"),
    ("RequestHeader set X-A 1 early", "early phase"),
    ("Header echo ^X-", "echo"),
    ("Header note X-A a", "notes"),
    ('Header set X-Time "%D %t"', "format specifiers"),
    ("RequestHeader set Host other.example", "proxy's own field"),
    ("Header frob X-A", "not a rule hbfork can apply"),
])
def test_what_cannot_be_a_rule_is_listed_by_line(directive: str, reason: str) -> None:
    text, _ = load(BASE + "ProxyPass / balancer://app/\n" + directive + "\n")
    listed = notes(text)
    assert any(":5)" in note and reason in note for note in listed), listed
    loads(text)  # and what was written still loads


def test_a_rule_in_a_balancer_section_is_listed() -> None:
    text, _ = load("<Proxy balancer://app>\nBalancerMember http://10.0.0.1:8080\n"
                   "Header set X-A 1\n</Proxy>\nProxyPass / balancer://app/\n")
    assert any("Header set X-A 1" in note and "per server" in note for note in notes(text))
    assert "response_headers" not in text


def test_rules_no_route_carries_are_listed() -> None:
    text, _ = load(BASE + "ProxyPass /app/ balancer://app/\n<Location /admin>\n"
                   "Header set X-Admin 1\n</Location>\n<VirtualHost *:80>\nServerName a.example\n"
                   "Header set X-A 1\n</VirtualHost>\n")
    listed = notes(text)
    assert any("X-Admin" in note and "no ProxyPass of its own" in note for note in listed)
    # the vhost inherits the main server's ProxyPass: its rule rides on that route
    assert not any("X-A 1" in note for note in listed), listed
    assert 'response_headers = ["set X-A 1"]' in text
    text, _ = load(BASE + "<VirtualHost *:80>\nServerName a.example\nHeader set X-A 1\n"
                   "</VirtualHost>\n")
    assert any("X-A 1" in note and "proxies nothing" in note for note in notes(text))
