"""import-apache and mod_remoteip: RemoteIPHeader, RemoteIPTrustedProxy/InternalProxy and
RemoteIPProxyProtocol become settings that load; what has no equivalent is listed."""

from __future__ import annotations

from hbfork.core.addresses import parse_network
from tests.unit.apache.importing import load, notes

BASE = """Listen 8080
<Proxy balancer://app>
BalancerMember http://10.0.0.1:8080
</Proxy>
ProxyPass / balancer://app/
"""


def test_header_and_proxies_translate():
    text, config = load(BASE + """RemoteIPHeader X-Client-IP
RemoteIPTrustedProxy 192.0.2.0/24 198.51.100.7
RemoteIPInternalProxy 10.0.0.0/8
RemoteIPInternalProxy 10.0.0.0/8
""")
    assert config.http.client_ip_header == "X-Client-IP"
    assert config.proxy.trusted_proxies == tuple(parse_network(n) for n in (
        "192.0.2.0/24", "198.51.100.7/32", "10.0.0.0/8"))
    assert "private address presented by a RemoteIPTrustedProxy" in text
    assert not [n for n in notes(text) if "RemoteIP" in n]


def test_what_cannot_be_translated_is_listed():
    text, config = load(BASE + """RemoteIPHeader X-Forwarded-For
RemoteIPTrustedProxyList conf/trusted.txt
RemoteIPInternalProxy proxy.example.com
RemoteIPProxiesHeader X-Forwarded-By
""")
    listed = "\n".join(notes(text))
    for directive in ("RemoteIPTrustedProxyList", "RemoteIPInternalProxy proxy.example.com",
                      "RemoteIPProxiesHeader", "RemoteIPHeader"):  # the last: nobody trusted
        assert directive in listed, directive
    assert config.proxy.trusted_proxies == ()


def test_proxy_protocol_on_every_listener():
    _, config = load(BASE + "RemoteIPProxyProtocol On\nRemoteIPTrustedProxy 10.1.0.0/16\n")
    (listen,) = config.listeners
    assert listen.proxy_protocol and listen.address.port == 8080
    assert listen.proxy_sources(config.proxy.trusted_proxies) == (parse_network("10.1.0.0/16"),)


def test_proxy_protocol_without_trusted_proxies_takes_any_source_as_apache_does():
    text, config = load(BASE + "RemoteIPProxyProtocol On\n")
    (listen,) = config.listeners
    assert listen.proxy_protocol
    assert listen.proxy_protocol_from == (parse_network("0.0.0.0/0"), parse_network("::/0"))
    assert "list your balancers here" in text


def test_proxy_protocol_off_changes_nothing():
    _, config = load(BASE + "RemoteIPProxyProtocol Off\n")
    assert not any(listen.proxy_protocol for listen in config.listeners)
