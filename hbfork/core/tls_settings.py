"""The settings of TLS at the front: `[tls]` (protocol options), `[[certificate]]` (one block per
certificate; the one for a connection is chosen by SNI) and `[[listen]]` (listeners with
options: TLS, a plain listener that redirects to https, HSTS). Declared once, like every other
section; reading the files they name is hbfork.system.tls's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hbfork.core.addresses import Endpoint, IPNetwork
from hbfork.core.header_rules import Rule, request_setting, response_setting
from hbfork.core.pool_settings import normalize_host_pattern
from hbfork.core.values import (
    boolean,
    choice,
    endpoint,
    integer,
    optional_network_list,
    seconds,
    setting,
    text_value,
)

# Forward secrecy and AEAD only, for TLS 1.2 (TLS 1.3's suites are fixed by OpenSSL).
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


def _names(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("expected a host name, \"*.domain\", or a list of them")
    return tuple(normalize_host_pattern(text_value(item)) for item in items)


def _ciphers(value: Any) -> str:
    text = text_value(value)
    if not text or any(c.isspace() for c in text):
        raise ValueError("expected an OpenSSL cipher list like \"ECDHE+AESGCM\"")
    return text


@dataclass(frozen=True)
class TlsSettings:
    min_version: str = setting("1.2", choice("1.2", "1.3"),
                               "oldest TLS version accepted (1.0 and 1.1 never are)", '"1.2"')
    ciphers: str = setting(MODERN_CIPHERS, _ciphers,
                           "OpenSSL cipher list for TLS 1.2 (1.3's are OpenSSL's)",
                           '"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"')
    handshake_timeout: float = setting(10.0, seconds(0, 600),
                                       "seconds a client has to finish its handshake")
    session_tickets: bool = setting(True, boolean,
                                    "resumption by session tickets (shared by all workers; "
                                    "new keys on every reload)")


@dataclass(frozen=True)
class CertificateSettings:
    cert: str = setting("", text_value, "PEM certificate file (required)", "(required)")
    key: str = setting("", text_value, "PEM private key file (default: in cert)", '""')
    chain: str = setting("", text_value, "PEM file of intermediate certificates", '""')
    names: tuple[str, ...] = setting((), _names,
                                     "SNI names it serves, exact or \"*.domain\" (default: "
                                     "the certificate's own names)", "(from the certificate)")
    default: bool = setting(False, boolean,
                            "serve it to clients that send no name or an unknown one "
                            "(default: the first certificate)")


@dataclass(frozen=True)
class ListenSettings:
    address: Endpoint = setting(None, endpoint, "IP:port to listen on (required)",
                                "(required)")
    tls: bool = setting(False, boolean, "terminate TLS here (with the [[certificate]]s)")
    redirect_https: bool = setting(False, boolean,
                                   "plain listener: answer every request 301 to https")
    https_port: int = setting(443, integer(1, 65535),
                              "the port redirect_https sends clients to")
    hsts: int = setting(0, integer(0, 63072000),
                        "TLS listener: Strict-Transport-Security max-age in seconds; 0 = off")
    hsts_subdomains: bool = setting(False, boolean, "add includeSubDomains to HSTS")
    request_headers: tuple[Rule, ...] = request_setting("on this listener")
    response_headers: tuple[Rule, ...] = response_setting("on this listener")
    trusted_proxies: tuple[IPNetwork, ...] | None = setting(
        None, optional_network_list, "this listener's trusted proxies (CIDRs)",
        "(from [proxy])")
    proxy_protocol: bool = setting(False, boolean,
                                   "every connection starts with a PROXY protocol header (v1 or "
                                   "v2), read before TLS; without one it is closed")
    proxy_protocol_from: tuple[IPNetwork, ...] | None = setting(
        None, optional_network_list, "CIDRs allowed to send that header (others are closed)",
        "(trusted_proxies)")
    proxy_protocol_timeout: float = setting(5.0, seconds(0, 600),
                                            "seconds a connection has to send its PROXY header")

    def proxies(self, default: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
        """Its trusted proxies: its own, else `default` ([proxy] trusted_proxies)."""
        return default if self.trusted_proxies is None else self.trusted_proxies

    def proxy_sources(self, default: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
        """Who may send it a PROXY header: proxy_protocol_from, else its trusted proxies."""
        return self.proxies(default) if self.proxy_protocol_from is None \
            else self.proxy_protocol_from
