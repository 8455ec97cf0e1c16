"""import-apache never skips silently what a client or member would notice."""

from __future__ import annotations

import pytest

from hbfork.apache.unhandled import reason_left_out
from tests.unit.apache.importing import load, notes

EDGE = """LoadModule headers_module modules/mod_headers.so
AddType text/plain .txt
<Proxy balancer://app>
BalancerMember http://10.0.0.1:8080
</Proxy>
ProxyPass / balancer://app/
RequestHeader set X-Env prod
Header always set X-Frame-Options DENY
Header unset Server
RemoteIPHeader X-Forwarded-For
RemoteIPTrustedProxy proxy.internal
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog /var/log/apache2/access.log common
Protocols h2 http/1.1
AddOutputFilterByType DEFLATE text/html
ProxyErrorOverride On
<If "%{HTTP_HOST} == 'x'">
Require all denied
</If>
"""


def test_every_edge_directive_is_listed_by_line():
    text, _ = load(EDGE)
    listed = "\n".join(notes(text))
    # mod_headers' rules are translated (hbfork.apache.headers; tests/unit/apache/test_headers)
    assert 'request_headers = ["set X-Env prod"]' in text
    for directive, line in (("RemoteIPHeader", 10), ("RemoteIPTrustedProxy", 11),
                            ("Protocols", 14),
                            ("AddOutputFilterByType", 15), ("ProxyErrorOverride", 16),
                            ("<If", 17)):
        assert any(directive in note and f":{line})" in note for note in notes(text)), \
            (directive, listed)
    # LogFormat and CustomLog are translated (hbfork.apache.logs)
    assert 'access = "/var/log/apache2/access.log"' in text
    assert "LogFormat" not in listed and "CustomLog" not in listed
    # LoadModule and AddType cannot change what anyone sees: summarised, not listed
    assert "LoadModule" not in listed and "AddType" not in listed
    assert "2 other directive(s) that cannot change what a client" in text


@pytest.mark.parametrize("key", ["loadmodule", "maxrequestworkers", "addtype", "errorlog",
                                 "documentroot", "directory"])
def test_harmless(key):
    assert reason_left_out(key, section=key == "directory") is None


@pytest.mark.parametrize("key", ["requestheader", "customlog", "require", "alias",
                                 "somethingnew"])
def test_listed(key):
    assert reason_left_out(key)
