"""The real-client-address and PROXY protocol keys: defaults, inheritance, and errors that name
file, key and problem."""

from __future__ import annotations

from hbfork.core.addresses import parse_network
from tests.unit.core.test_config import MEMBER, error, load

LISTEN = '[[listen]]\naddress = "127.0.0.1:8443"\n'


def test_defaults_trust_nobody():
    config = load(MEMBER)
    assert config.proxy.trusted_proxies == ()
    assert config.http.client_ip_header == "X-Forwarded-For"
    assert config.pools[0].proxy_protocol == ""
    assert all(not listen.proxy_protocol and listen.trusted_proxies == ()
               for listen in config.listeners)


def test_a_listener_inherits_or_overrides_trusted_proxies():
    config = load(MEMBER + '[proxy]\ntrusted_proxies = ["10.0.0.0/8"]\nlisten = ["127.0.0.1:80"]\n'
                  + LISTEN + 'proxy_protocol = true\n'
                  + '[[listen]]\naddress = "127.0.0.1:81"\ntrusted_proxies = ["192.0.2.0/24"]\n'
                  + 'proxy_protocol = true\nproxy_protocol_from = ["198.51.100.1"]\n')
    plain, inherits, own = config.listeners
    ten, doc, one = (parse_network(n) for n in ("10.0.0.0/8", "192.0.2.0/24", "198.51.100.1"))
    assert plain.trusted_proxies == (ten,) and inherits.trusted_proxies == (ten,)
    assert inherits.proxy_sources(config.proxy.trusted_proxies) == (ten,)
    assert own.trusted_proxies == (doc,)
    assert own.proxy_sources(config.proxy.trusted_proxies) == (one,)


def test_proxy_protocol_needs_its_sources():
    error(MEMBER + LISTEN + "proxy_protocol = true\n", "[[listen]] #1 proxy_protocol",
          "proxy_protocol_from", "0.0.0.0/0")


def test_bad_values_are_named():
    error(MEMBER + '[proxy]\ntrusted_proxies = ["10.0.0.0/33"]\n', "[proxy] trusted_proxies",
          "CIDR")
    error(MEMBER + '[http]\nclient_ip_header = "X Real IP"\n', "[http] client_ip_header",
          "header name")
    error(MEMBER + LISTEN + 'proxy_protocol_timeout = 0\n',
          "[[listen]] #1 proxy_protocol_timeout", "seconds")
    error(MEMBER + '[[pool]]\nname = "default"\nmembers = ["10.0.0.11:8080"]\n'
          'proxy_protocol = "v3"\n', "[[pool]] #1 proxy_protocol", "v1")
