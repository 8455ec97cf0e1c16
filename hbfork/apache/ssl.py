"""mod_ssl's settings of one server, merged and read as mod_ssl does [pure].

`ssl_of(server, main)` merges a <VirtualHost>'s mod_ssl directives over the main server's, as
mod_ssl's server merge does: a value the vhost sets wins, else the main server's; the vhost's
SSLCertificateFile/KeyFile lines take the place of the main server's first ones. Within a
server the last line wins. Then:

* `enabled(ssl, https)`: does the server talk TLS? `SSLEngine on`; or, with no SSLEngine
  anywhere, a vhost on a listener whose protocol is https (`Listen 443`, `Listen N https`)
  that has a certificate (Apache 2.4 turns TLS on by itself there).
* `protocols(d)`: the versions an `SSLProtocol` line allows (default: all -SSLv3, so TLS 1.0
  to 1.3), `cipher_list(d)`: an SSLCipherSuite as the OpenSSL list mod_ssl hands OpenSSL.
* `NOTED`: the mod_ssl directives hbfork has no setting for, and why.
"""

from __future__ import annotations

import re
import ssl as stdlib_ssl
from dataclasses import dataclass, field

from hbfork.apache.collect import Server
from hbfork.apache.conf import Directive

VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
HBFORK_VERSIONS = {"TLSv1.2": "1.2", "TLSv1.3": "1.3"}
DEFAULT_PROTOCOLS = frozenset(VERSIONS)          # mod_ssl's default: all -SSLv3
MOD_SSL_EXCLUDES = ("!aNULL", "!eNULL", "!EXP")  # mod_ssl adds these to every SSLCipherSuite
CLIENT_CERTS = "hbfork asks clients for no certificate (no client certificates, mTLS)"
STAPLING = "hbfork does not staple OCSP responses"
SESSION_CACHE = ("hbfork resumes sessions by tickets whose keys every worker shares ([tls] "
                 "session_tickets); it keeps no session cache")
CA_FILES = (CLIENT_CERTS + "; if it holds the intermediates of the server's certificate, "
            "OpenSSL may have sent them from there: give them as [[certificate]] chain")
NOTED = {
    "sslverifydepth": CLIENT_CERTS, "sslcacertificatefile": CA_FILES,
    "sslcacertificatepath": CA_FILES, "sslcadnrequestfile": CLIENT_CERTS,
    "sslcadnrequestpath": CLIENT_CERTS, "sslcarevocationfile": CLIENT_CERTS,
    "sslcarevocationpath": CLIENT_CERTS, "sslcarevocationcheck": CLIENT_CERTS,
    "sslocspenable": CLIENT_CERTS, "sslocspdefaultresponder": CLIENT_CERTS,
    "sslocspoverrideresponder": CLIENT_CERTS, "sslocspproxyurl": CLIENT_CERTS,
    "sslocspresponsetimeskew": CLIENT_CERTS, "sslocspresponsemaxage": CLIENT_CERTS,
    "sslocsprespondertimeout": CLIENT_CERTS, "sslocspusenonce": CLIENT_CERTS,
    "sslocsprespondercertificatefile": CLIENT_CERTS, "sslocspnoverify": CLIENT_CERTS,
    "sslusername": CLIENT_CERTS,
    "sslsessioncache": SESSION_CACHE, "sslsessioncachetimeout": SESSION_CACHE,
    "sslsessionticketkeyfile": "hbfork makes new session-ticket keys at every start and "
                               "reload",
    "sslpassphrasedialog": "hbfork reads private keys that have no pass phrase: remove it "
                           "from an encrypted key (openssl pkey -in KEY -out KEY)",
    "sslopensslconfcmd": "hbfork sets OpenSSL's options itself ([tls] min_version, ciphers)",
    "sslstrictsnivhostcheck": "hbfork gives clients that send no name, or an unknown one, its "
                              "default certificate; it cannot refuse them",
    "sslcryptodevice": "hbfork uses OpenSSL's default engine",
    "sslsrpverifierfile": "hbfork has no TLS-SRP", "sslsrpunknownuserseed": "hbfork has no "
                                                                           "TLS-SRP",
    "sslrenegbuffersize": "hbfork never renegotiates",
    "sslfips": "hbfork uses OpenSSL as the system configures it",
    "sslpolicy": "hbfork's TLS settings are [tls] min_version and ciphers",
}
# Lines that say what hbfork does anyway: nothing to carry over.
SAME_AS_HBFORK = {"sslcompression": "off", "sslinsecurerenegotiation": "off",
                  "sslverifyclient": "none", "sslusestapling": "off", "sslocspenable": "off",
                  "sslsessioncache": "none"}
SAME_AS_HBFORK_REASON = {"sslcompression": "hbfork never compresses TLS (CRIME)",
                         "sslinsecurerenegotiation": "hbfork never allows insecure "
                                                     "renegotiation",
                         "sslverifyclient": CLIENT_CERTS, "sslusestapling": STAPLING,
                         "sslocspenable": CLIENT_CERTS, "sslsessioncache": SESSION_CACHE}
USED = frozenset({"sslengine", "sslcertificatefile", "sslcertificatekeyfile",
                  "sslcertificatechainfile", "sslprotocol", "sslciphersuite",
                  "sslhonorcipherorder", "sslsessiontickets"})
STAPLING_PREFIXES = ("sslusestapling", "sslstapling")
SILENT = frozenset({"sslrandomseed"})   # OpenSSL seeds itself


@dataclass
class SslServer:
    """One server's mod_ssl settings, merged with the main server's."""

    server: Server
    values: dict[str, Directive] = field(default_factory=dict)   # last line wins
    certs: list[Directive] = field(default_factory=list)
    keys: list[Directive] = field(default_factory=list)
    tls13_ciphers: Directive | None = None

    def get(self, key: str) -> Directive | None:
        return self.values.get(key)

    def flag(self, key: str) -> bool | None:
        d = self.values.get(key)
        return None if d is None or not d.args else d.args[0].lower() == "on"

    @property
    def ciphers(self) -> Directive | None:
        return self.values.get("sslciphersuite")


def ssl_of(server: Server, main: Server) -> SslServer:
    """The server's settings: its own lines over the main server's (for a vhost)."""
    merged = SslServer(server)
    base = _own(main)
    own = _own(server) if server is not main else base
    merged.values = {**base.values, **own.values}
    merged.tls13_ciphers = own.tls13_ciphers or base.tls13_ciphers
    merged.certs = own.certs + base.certs[len(own.certs):]
    merged.keys = own.keys + base.keys[len(own.keys):]
    return merged


def _own(server: Server) -> SslServer:
    found = SslServer(server)
    for d in server.ssl:
        if d.key == "sslcertificatefile":
            found.certs.append(d)
        elif d.key == "sslcertificatekeyfile":
            found.keys.append(d)
        elif d.key == "sslciphersuite" and len(d.args) == 2 and d.args[0] == "TLSv1.3":
            found.tls13_ciphers = d
        else:
            found.values[d.key] = d
    return found


def enabled(merged: SslServer, https: bool) -> bool:
    """Does Apache talk TLS in this server? `https`: the listener's protocol is https (and
    the server is a vhost: the main server's protocol is always http)."""
    engine = merged.get("sslengine")
    if engine is not None:
        return bool(engine.args) and engine.args[0].lower() == "on"
    return https and bool(merged.certs)


# --- SSLProtocol


def protocols(d: Directive | None) -> tuple[frozenset[str], str]:
    """The TLS versions an SSLProtocol line allows, and a problem Apache would refuse to
    start for ("" if none). Words are read as mod_ssl reads them: `all`, a version, each
    optionally with + or -; a word without a sign replaces what came before."""
    if d is None:
        return DEFAULT_PROTOCOLS, ""
    allowed: set[str] = set()
    for word in d.args:
        sign, name = (word[0], word[1:]) if word[:1] in "+-" else ("", word)
        versions = _versions(name)
        if versions is None:
            if name.lower() in ("sslv2", "sslv3") and sign == "-":
                continue
            return DEFAULT_PROTOCOLS, f"{word} is not a protocol Apache accepts here"
        if sign == "-":
            allowed -= versions
        elif sign == "+":
            allowed |= versions
        else:
            allowed = set(versions)
    return frozenset(allowed), ""


def _versions(name: str) -> set[str] | None:
    if name.lower() == "all":
        return set(VERSIONS)
    found = [v for v in VERSIONS if v.lower() == name.lower()]
    return set(found) if found else None


def min_version(allowed: frozenset[str]) -> str:
    """hbfork's min_version for what Apache allowed ("1.2" when Apache allowed only older
    versions, which hbfork never accepts)."""
    for version in ("TLSv1.2", "TLSv1.3"):
        if version in allowed:
            return HBFORK_VERSIONS[version]
    return "1.2"


# --- SSLCipherSuite


def cipher_list(d: Directive) -> tuple[str, str]:
    """(the OpenSSL cipher list mod_ssl uses for TLS <= 1.2, problem). mod_ssl appends
    !aNULL:!eNULL:!EXP; OpenSSL also takes spaces and commas between the words."""
    words = d.args[1:] if len(d.args) == 2 and d.args[0] == "SSL" else d.args
    if len(words) != 1:
        return "", "not an SSLCipherSuite hbfork can read"
    parts = [p for p in re.split(r"[:\s,]+", words[0]) if p]
    parts += [x for x in MOD_SSL_EXCLUDES if x not in parts]
    text = ":".join(parts)
    try:
        stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_SERVER).set_ciphers(text)
    except stdlib_ssl.SSLError:
        return "", "OpenSSL selects no cipher from it (Apache would not start either)"
    return text, ""


# --- directives with nothing to translate to


def unused_reason(d: Directive) -> str | None:
    """Why a mod_ssl line of a TLS server is not translated (None: it is, or needs
    nothing)."""
    if d.key in USED or d.key in SILENT:
        return None
    if d.key in SAME_AS_HBFORK:
        value = d.args[0].lower() if d.args else ""
        return None if value == SAME_AS_HBFORK[d.key] else SAME_AS_HBFORK_REASON[d.key]
    if d.key.startswith(STAPLING_PREFIXES):
        return STAPLING
    return NOTED.get(d.key, "no hbfork equivalent")
