"""import-apache: TLS to clients (hbfork.apache.listeners, hbfork.apache.ssl,
hbfork.apache.certificates): Listen + SSLEngine -> [[listen]] tls, certificates per vhost with
their SNI names, SSLProtocol / SSLCipherSuite / SSLSessionTickets -> [tls], and the mod_ssl
lines hbfork has nothing for. Asserted on the config hbfork loads from the output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbfork.apache.conf import parse_envvars
from hbfork.apache.include import Walker
from hbfork.apache.render import render
from hbfork.apache.ssl import protocols
from hbfork.apache.translate import translate
from hbfork.core import config as config_module
from hbfork.core.tls_settings import MODERN_CIPHERS
from hbfork.system.tls import load_contexts, server_context
from tests.certs import Authority
from tests.unit.apache.importing import NOTE, comments, forward, load, notes, translate_file
from tests.unit.apache.test_import import (
    DEBIAN,
    MOVING,
    MovedSource,
    _block,
    _in_order,
    debian_front,
)
from tests.unit.apache.test_include import walk

POOL = "<Proxy balancer://app>\nBalancerMember http://10.0.0.11:8080\n</Proxy>\n"


def tls_vhost(name: str = "www.example.com", extra: str = "", cert: str = "",
              address: str = "*:443", engine: str = "SSLEngine on\n") -> str:
    cert = cert or f"/etc/ssl/{name}.pem"
    return (f"<VirtualHost {address}>\nServerName {name}\n{engine}"
            f"SSLCertificateFile {cert}\n{extra}ProxyPass / balancer://app/\n</VirtualHost>\n")


def listens(config: config_module.Config) -> dict[str, tuple[bool, bool]]:
    """address -> (tls, redirect_https) of every client-facing listener."""
    return {str(entry.address): (entry.tls, entry.redirect_https) for entry in config.listeners}


def certificates(config: config_module.Config) -> list[tuple[str, tuple[str, ...], bool]]:
    return [(c.cert, c.names, c.default) for c in config.certificates]


# --- which listeners talk TLS


def test_a_tls_vhost_makes_a_tls_listener_and_every_listener_a_listen_block() -> None:
    text, config = load("Listen 80\nListen 443 https\n" + POOL + tls_vhost())
    assert config.proxy.listen == ()      # [proxy] listen has no default next to [[listen]]
    assert listens(config) == {"0.0.0.0:80": (False, False), "0.0.0.0:443": (True, False)}
    assert certificates(config) == [("/etc/ssl/www.example.com.pem", ("www.example.com",),
                                     True)]
    assert config.certificates[0].key == ""           # no SSLCertificateKeyFile: in the cert
    assert "SSLEngine on" in comments(text) and "TLS terminated here" in comments(text)
    # the TLS vhost's ProxyPass lines route now (they used to be left out)
    assert forward(config, "www.example.com", "/x") == ("app", "/x")
    assert not notes(text)


def test_without_tls_the_listeners_stay_in_proxy_listen() -> None:
    _, config = load("Listen 80\nListen 8080\n" + POOL + "ProxyPass / balancer://app/\n")
    assert [str(e) for e in config.proxy.listen] == ["0.0.0.0:80", "0.0.0.0:8080"]
    assert config.listens == () and config.certificates == ()


@pytest.mark.parametrize(("listen", "engine", "tls", "said"), [
    # port 443 is https, and there a certificate turns TLS on (Apache 2.4 does)
    ("Listen 443", "", True, ""),
    ("Listen 8443 https", "", True, ""),
    ("Listen 8443", "", False, ""),            # http: the certificate alone does nothing
    ("Listen 443", "SSLEngine off\n", False, "https, but no server there has TLS on"),
    ("Listen 8443 http", "SSLEngine on\n", True, ""),
    ("Listen 443", "SSLEngine optional\n", False, "Upgrade (RFC 2817)"),
])
def test_tls_as_mod_ssl_decides_it(listen: str, engine: str, tls: bool, said: str) -> None:
    port = listen.split()[1]
    text, config = load(f"{listen}\n" + POOL + tls_vhost(address=f"*:{port}", engine=engine))
    assert listens(config) == {f"0.0.0.0:{port}": (tls, False)}
    assert bool(config.certificates) == tls
    assert (said in comments(text)) if said else not notes(text)


def test_the_main_servers_sslengine_and_certificate_are_the_vhosts_default() -> None:
    text, config = load("Listen 443\nSSLEngine on\nSSLCertificateFile /etc/ssl/main.pem\n"
                        "SSLCertificateKeyFile /etc/ssl/main.key\n" + POOL
                        + "<VirtualHost *:443>\nServerName a.example.com\n"
                          "ProxyPass / balancer://app/\n</VirtualHost>\n"
                        + tls_vhost("b.example.com", engine=""))
    assert listens(config) == {"0.0.0.0:443": (True, False)}
    assert certificates(config) == [("/etc/ssl/main.pem", ("a.example.com",), True),
                                    ("/etc/ssl/b.example.com.pem", ("b.example.com",), False)]
    # the vhost's own SSLCertificateFile takes the place of the main server's, not its key
    assert [c.key for c in config.certificates] == ["/etc/ssl/main.key", "/etc/ssl/main.key"]
    assert not notes(text)


def test_the_first_vhost_of_a_port_decides_tls_for_the_listener() -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost()
                        + tls_vhost("plain.example.com", engine="SSLEngine off\n"))
    assert listens(config) == {"0.0.0.0:443": (True, False)}
    assert [c.names for c in config.certificates] == [("www.example.com",)]
    assert any("Apache talks plain HTTP in this vhost" in n for n in notes(text))


def test_tls_without_a_certificate_leaves_the_listener_out() -> None:
    text, config = load("Listen 80\nListen 443\n" + POOL
                        + "<VirtualHost *:443>\nServerName s.example.com\nSSLEngine on\n"
                          "ProxyPass / balancer://app/\n</VirtualHost>\n")
    assert listens(config) == {"0.0.0.0:80": (False, False)}
    found = "\n".join(notes(text))
    assert "no SSLCertificateFile" in found and "Apache refuses to start" in found
    assert "port 443, where hbfork has no listener that routes" in found


# --- certificates


def test_certificate_paths_are_taken_from_the_server_root() -> None:
    _, config = load("ServerRoot /srv/web\nListen 443\n" + POOL + tls_vhost(
        cert="certs/www.pem", extra="SSLCertificateKeyFile private/www.key\n"
                                    "SSLCertificateChainFile certs/../certs/chain.pem\n"))
    cert = config.certificates[0]
    assert (cert.cert, cert.key, cert.chain) == ("/srv/web/certs/www.pem",
                                                 "/srv/web/private/www.key",
                                                 "/srv/web/certs/chain.pem")


def test_sni_names_are_the_vhosts_names_and_the_first_vhost_has_the_default() -> None:
    text, config = load(
        "Listen 443\nServerName front.example.com\n" + POOL
        + tls_vhost("www.example.com", "ServerAlias example.com *.example.org\n")
        + tls_vhost("api.example.com", "ServerAlias example.com\n")   # taken by www: dropped
        + tls_vhost("shop.example.com", cert="/etc/ssl/www.example.com.pem")  # www's cert
        + "<VirtualHost *:443>\nSSLEngine on\nSSLCertificateFile /etc/ssl/noname.pem\n"
          "</VirtualHost>\n")
    assert certificates(config) == [
        ("/etc/ssl/www.example.com.pem", ("www.example.com", "example.com", "*.example.org",
                                          "shop.example.com"), True),
        ("/etc/ssl/api.example.com.pem", ("api.example.com",), False),
        # no ServerName of its own: the main server's, as Apache gives it
        ("/etc/ssl/noname.pem", ("front.example.com",), False)]
    assert any("example.com is already matched" in n for n in notes(text))


def test_a_second_certificate_of_one_vhost_is_noted() -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost(
        cert="/etc/ssl/rsa.pem", extra="SSLCertificateKeyFile /etc/ssl/rsa.key\n"
                                       "SSLCertificateFile /etc/ssl/ecdsa.pem\n"
                                       "SSLCertificateKeyFile /etc/ssl/ecdsa.key\n"))
    assert [(c.cert, c.key) for c in config.certificates] == [("/etc/ssl/rsa.pem",
                                                               "/etc/ssl/rsa.key")]
    assert any("SSLCertificateFile /etc/ssl/ecdsa.pem" in n and "one certificate per name"
               in n for n in notes(text))


def test_a_certificate_file_that_holds_the_chain_is_loaded_as_it_is(tmp_path: Path) -> None:
    root = Authority(tmp_path / "pki")
    intermediate = root.intermediate("intermediate", "hbfork test intermediate")
    www = intermediate.issue("www", "www.example.com")
    api = intermediate.issue("api", "api.example.com")
    full = tmp_path / "pki" / "api-full.pem"
    full.write_bytes(api.cert.read_bytes() + intermediate.path.read_bytes())
    _, config = load(
        "Listen 443\n" + POOL
        + tls_vhost(cert=str(www.cert), extra=f"SSLCertificateKeyFile {www.key}\n"
                                              f"SSLCertificateChainFile {intermediate.path}\n")
        + tls_vhost("api.example.com", cert=str(full),
                    extra=f"SSLCertificateKeyFile {api.key}\n"))
    assert [(c.cert, c.chain) for c in config.certificates] == [
        (str(www.cert), str(intermediate.path)), (str(full), "")]
    contexts = load_contexts(config)        # what `hbfork check` and the master load
    assert contexts is not None
    assert [c.names for c in contexts.certificates] == [("www.example.com",),
                                                        ("api.example.com",)]
    assert contexts.for_name("api.example.com") is contexts.certificates[1].context


def test_an_undefined_variable_in_a_certificate_path_is_noted() -> None:
    text, config = load("Listen 80\nListen 443\n" + POOL + tls_vhost(cert="${CERTS}/www.pem"))
    assert config.certificates == () and listens(config) == {"0.0.0.0:80": (False, False)}
    found = "\n".join(notes(text))
    assert "${CERTS} not defined here" in found and "this listener is left out" in found


# --- [tls]


@pytest.mark.parametrize(("line", "allowed"), [
    ("", {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}),                 # all -SSLv3
    ("all -SSLv3 -TLSv1 -TLSv1.1", {"TLSv1.2", "TLSv1.3"}),
    ("-all +TLSv1.2", {"TLSv1.2"}),
    ("TLSv1.2 +tlsv1.3", {"TLSv1.2", "TLSv1.3"}),                     # case does not matter
    ("+TLSv1.2 TLSv1.3", {"TLSv1.3"}),                                # no sign: replaces
    ("all -TLSv1.2", {"TLSv1", "TLSv1.1", "TLSv1.3"}),
])
def test_ssl_protocol_read_as_mod_ssl_reads_it(line: str, allowed: set[str]) -> None:
    d = walk({"/etc/httpd/httpd.conf": f"SSLProtocol {line}\n"}).directives[0] if line \
        else None
    assert protocols(d) == (frozenset(allowed), "")


@pytest.mark.parametrize(("line", "version", "noted"), [
    ("all -SSLv3 -TLSv1 -TLSv1.1", "1.2", []),
    ("TLSv1.3", "1.3", []),
    ("-all +TLSv1.2", "1.2", ["accepts TLS 1.3 too"]),
    ("all -SSLv3", "1.2", ["TLSv1 TLSv1.1 of SSLProtocol all -SSLv3"]),
    ("-all +TLSv1.1 +TLSv1.3", "1.3", ["TLSv1.1 of"]),
    ("TLSv1", "1.2", ["never accepts TLS 1.0", "cannot connect unless"]),
    ("all +SSLv3", "1.2", ["+SSLv3 is not a protocol"]),
])
def test_ssl_protocol_becomes_min_version(line: str, version: str, noted: list[str]) -> None:
    text, config = load(f"Listen 443\nSSLProtocol {line}\n" + POOL + tls_vhost())
    assert config.tls.min_version == version
    found = "\n".join(notes(text))
    for expected in noted:
        assert expected in found, expected
    if not noted:
        assert "SSLProtocol" not in found


def test_no_ssl_protocol_says_what_apaches_default_allowed() -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost())
    assert config.tls.min_version == "1.2"
    assert "Apache's default all -SSLv3 allows TLS 1.0 to 1.3" in comments(text)


def test_the_strictest_ssl_protocol_of_the_vhosts_wins() -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost()
                        + tls_vhost("api.example.com", "SSLProtocol TLSv1.3\n"))
    assert config.tls.min_version == "1.3"
    assert any("the strictest, 1.3, so clients of <VirtualHost *:443>" in n
               for n in notes(text))


@pytest.mark.parametrize(("line", "ciphers"), [
    ("HIGH:!aNULL", "HIGH:!aNULL:!eNULL:!EXP"),        # what mod_ssl adds, once
    ("SSL ECDHE+AESGCM:!eNULL", "ECDHE+AESGCM:!eNULL:!aNULL:!EXP"),
    ('"ECDHE+AESGCM ECDHE+CHACHA20"', "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!EXP"),
])
def test_ssl_cipher_suite_becomes_ciphers(line: str, ciphers: str) -> None:
    text, config = load(f"Listen 443\nSSLCipherSuite {line}\n" + POOL + tls_vhost())
    assert config.tls.ciphers == ciphers
    server_context(config.tls)                          # OpenSSL takes it as hbfork uses it
    assert not notes(text)


def test_cipher_suites_hbfork_cannot_take_are_noted() -> None:
    text, config = load("Listen 443\nSSLCipherSuite NOSUCHCIPHER\n"
                        "SSLCipherSuite TLSv1.3 TLS_AES_256_GCM_SHA384\n" + POOL + tls_vhost())
    assert config.tls.ciphers == MODERN_CIPHERS
    found = "\n".join(notes(text))
    assert "OpenSSL selects no cipher from it" in found
    assert "TLS 1.3's cipher suites to OpenSSL" in found


def test_no_cipher_suite_keeps_hbforks_and_says_so() -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost())
    assert config.tls.ciphers == MODERN_CIPHERS
    assert "No SSLCipherSuite (Apache used OpenSSL's default list)" in comments(text)


@pytest.mark.parametrize(("value", "noted"), [("on", False), ("off", True)])
def test_honor_cipher_order(value: str, noted: bool) -> None:
    text, _ = load(f"Listen 443\nSSLCipherSuite HIGH\nSSLHonorCipherOrder {value}\n" + POOL
                   + tls_vhost())
    assert any("always prefers its own cipher order" in n for n in notes(text)) == noted
    assert ("hbfork too prefers its own order" in comments(text)) != noted


def test_session_tickets_off_and_a_vhost_that_differs() -> None:
    text, config = load("Listen 443\nSSLSessionTickets off\n" + POOL + tls_vhost()
                        + tls_vhost("api.example.com", "SSLSessionTickets on\n"))
    assert config.tls.session_tickets is False
    assert any("SSLSessionTickets on" in n and "one [tls] session_tickets" in n
               for n in notes(text))


# --- what hbfork has nothing for


@pytest.mark.parametrize(("line", "reason"), [
    ("SSLVerifyClient require", "no client certificates"),
    ("SSLCACertificateFile /etc/ssl/clients.pem", "no client certificates"),
    ("SSLUseStapling on", "does not staple OCSP"),
    ("SSLStaplingCache shmcb:/run/stapling(32768)", "does not staple OCSP"),
    ("SSLSessionCache shmcb:/run/scache(512000)", "keeps no session cache"),
    ("SSLSessionCacheTimeout 300", "keeps no session cache"),
    ("SSLStrictSNIVHostCheck on", "cannot refuse them"),
    ("SSLCompression on", "never compresses TLS"),
    ("SSLOpenSSLConfCmd Curves X25519", "sets OpenSSL's options itself"),
    ("SSLPassPhraseDialog exec:/usr/share/apache2/ask-for-passphrase", "no pass phrase"),
    ("<Location /admin>\nSSLRequireSSL\n</Location>", "cannot require TLS per path"),
    ('<FilesMatch "\\.php$">\nSSLOptions +StdEnvVars\n</FilesMatch>', "X-Forwarded-Proto"),
    ("<Location /x>\nSSLVerifyClient require\n</Location>", "per listener, not per directory"),
    ("SSLProxyCheckPeerName off", "tls_verify, tls_ca and tls_server_name per pool"),
])
def test_mod_ssl_lines_hbfork_has_nothing_for_are_noted(line: str, reason: str) -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost(extra=line + "\n"))
    assert config.listens[0].tls
    found = [n for n in notes(text) if reason in n]
    assert len(found) == 1 and line.splitlines()[-2 if "\n" in line else 0] in found[0], found


@pytest.mark.parametrize("line", ["SSLVerifyClient none", "SSLCompression off",
                                  "SSLUseStapling off", "SSLRandomSeed startup builtin"])
def test_mod_ssl_lines_that_say_what_hbfork_does_anyway_are_not_noted(line: str) -> None:
    text, _ = load("Listen 443\n" + POOL + tls_vhost(extra=line + "\n"))
    assert notes(text) == []


def test_mod_ssl_lines_of_a_front_without_tls_are_not_noted() -> None:
    # Debian's ssl.conf with no TLS site: nothing uses them, as in Apache
    text, config = load("Listen 80\nSSLSessionCache shmcb:/run/c(512000)\nSSLProtocol all\n"
                        + POOL + "ProxyPass / balancer://app/\n")
    assert config.certificates == () and notes(text) == []


def test_tls_to_members_still_works_beside_a_tls_front() -> None:
    text, config = load("Listen 443\nSSLProxyEngine on\n<Proxy balancer://app>\n"
                        "BalancerMember https://10.0.0.11:8443\n</Proxy>\n" + tls_vhost())
    assert config.pool("app").tls and config.listens[0].tls
    assert forward(config, "www.example.com", "/") == ("app", "/")
    assert not any("SSLProxyEngine" in n for n in notes(text))


# --- Debian's stock tree with `a2enmod ssl` and `a2ensite default-ssl`


@pytest.mark.skipif(not DEBIAN.exists(), reason="no /etc/apache2/apache2.conf (Debian's apache2)")
def test_debian_default_ssl_site(tmp_path: Path) -> None:
    root = tmp_path / "apache2"
    shutil.copytree(DEBIAN.parent, root, symlinks=True)
    for name in ("ssl.load", "ssl.conf", "socache_shmcb.load"):
        link = root / "mods-enabled" / name
        if not link.exists():
            link.symlink_to(f"../mods-available/{name}")
    (root / "sites-enabled" / "default-ssl.conf").symlink_to("../sites-available/default-ssl.conf")
    text, config = translate_file(root / "apache2.conf")
    assert listens(config) == {"0.0.0.0:80": (False, False), "0.0.0.0:443": (True, False)}
    assert [(c.cert, c.key, c.default) for c in config.certificates] == [
        ("/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key",
         True)]
    assert (config.tls.min_version, config.tls.ciphers, config.tls.session_tickets) == (
        "1.2", "HIGH:!aNULL:!eNULL:!EXP", False)
    found = "\n".join(notes(text))
    for expected in ("SSLSessionCache", "SSLPassPhraseDialog", "TLSv1 TLSv1.1 of SSLProtocol",
                     "SSLOptions +StdEnvVars"):
        assert expected in found, expected


# --- any TLS front


TLS_LINES = st.sampled_from([
    "SSLEngine on", "SSLEngine off", "SSLEngine optional", "SSLEngine *:443",
    "SSLCertificateFile /etc/ssl/a.pem", "SSLCertificateFile certs/b.pem",
    "SSLCertificateFile ${UNSET}/c.pem", "SSLCertificateFile", "SSLCertificateKeyFile a.key",
    "SSLCertificateChainFile chain.pem", "SSLProtocol all -SSLv3", "SSLProtocol TLSv1.3",
    "SSLProtocol -all +TLSv1.2", "SSLProtocol TLSv1", "SSLProtocol bogus", "SSLProtocol",
    "SSLCipherSuite HIGH:!aNULL", "SSLCipherSuite NONE", "SSLCipherSuite TLSv1.3 X",
    "SSLCipherSuite", "SSLHonorCipherOrder on", "SSLHonorCipherOrder off",
    "SSLSessionTickets off", "SSLVerifyClient require", "SSLUseStapling on",
    'Header always set Strict-Transport-Security "max-age=600; includeSubDomains"',
    'Header set Strict-Transport-Security "max-age=0"',
    "Header always unset Strict-Transport-Security",
    'Header always set Strict-Transport-Security "max-age=600" env=!HTTPS',
    "Redirect permanent / https://www.example.com/", "Redirect / https://x:99999/",
    "Redirect permanent /a https://x/", "RedirectMatch ^/(.*)$ https://x/$1",
    "RewriteEngine on", "RewriteEngine off", "RewriteCond %{HTTPS} off",
    "RewriteCond %{SERVER_NAME} =www.example.com [OR]", "RewriteCond %{HTTP_HOST} ^a\\.b$",
    "RewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]", "RewriteRule ^ /x [P]",
    "RewriteRule", "ProxyPass / balancer://app/", "ServerName www.example.com",
    "ServerAlias *.example.com", "ServerName api.example.com"])
LISTENS = st.sampled_from(["Listen 80", "Listen 443", "Listen 8443 https", "Listen 443 http",
                           "Listen 127.0.0.1:8443", "Listen 8081 ftp"])
VHOSTS = st.lists(st.tuples(st.sampled_from(["*:80", "*:443", "*:8443", "*", "_default_:443"]),
                            st.lists(TLS_LINES, max_size=6)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(LISTENS, max_size=3), st.lists(TLS_LINES, max_size=5), VHOSTS)
def test_any_tls_front_translates_to_toml_that_loads(listens: list, main: list,
                                                     vhosts: list) -> None:
    text = "\n".join([*listens, POOL, *main]) + "\n" + "".join(
        f"<VirtualHost {address}>\n" + "\n".join(body) + "\n</VirtualHost>\n"
        for address, body in vhosts)
    rendered, _ = load(text)
    assert all(NOTE.match(line) for line in rendered.splitlines()
               if line.startswith("# not translated:"))


@pytest.mark.skipif(not DEBIAN.exists(), reason="no /etc/apache2/apache2.conf (Debian's apache2)")
def test_manual_tls_example_is_what_import_apache_prints(tmp_path: Path) -> None:
    root = debian_front(tmp_path, "hb-front-tls.conf", ("ssl", "socache_shmcb", "headers",
                                                        "rewrite"))
    env = parse_envvars((root / "envvars").read_text())
    walked = Walker(MovedSource(root), str(DEBIAN.parent), env).walk(str(DEBIAN))
    text = render(translate(walked), str(DEBIAN), walked)
    config = config_module.loads(text)
    assert listens(config) == {"0.0.0.0:80": (False, True), "0.0.0.0:443": (True, False)}
    assert forward(config, "example.com", "/x") == ("app", "/x")
    shown = _block(MOVING.read_text(), "with\n`a2enmod ssl headers rewrite`) prints", "toml")
    assert _in_order([line for line in shown if line], text.splitlines()) == []
