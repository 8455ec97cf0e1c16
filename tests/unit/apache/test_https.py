"""import-apache: keeping clients on https (hbfork.apache.https, hbfork.apache.listeners): a
port-80 vhost that only redirects to https -> the plain [[listen]]'s redirect_https, and a TLS
vhost's Strict-Transport-Security header -> the TLS [[listen]]'s hsts. Asserted on the config
hbfork loads from the output."""

from __future__ import annotations

import pytest

from hbfork.core import config as config_module
from tests.unit.apache.importing import comments, forward, load, notes
from tests.unit.apache.test_tls import POOL, tls_vhost

FRONT = "Listen 80\nListen 443\n" + POOL + tls_vhost("www.example.com")


def plain_vhost(body: str, name: str = "www.example.com", address: str = "*:80") -> str:
    return f"<VirtualHost {address}>\nServerName {name}\n{body}</VirtualHost>\n"


def listener(config: config_module.Config, port: int):
    return next(entry for entry in config.listeners if entry.address.port == port)


# --- redirects to https


@pytest.mark.parametrize("body", [
    "Redirect permanent / https://www.example.com/\n",
    "Redirect 301 / https://www.example.com/\n",
    'RedirectPermanent "/" "https://www.example.com/"\n',
    "RedirectMatch permanent ^/(.*)$ https://www.example.com/$1\n",
    "RedirectMatch 301 (.*) https://www.example.com$1\n",
    "RewriteEngine On\nRewriteCond %{HTTPS} off\n"
    "RewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n",
    "RewriteEngine on\nRewriteCond %{HTTPS} !=on\n"
    "RewriteRule ^/?(.*) https://%{SERVER_NAME}/$1 [R=permanent,L,NE]\n",
    "RewriteEngine On\nRewriteRule (.*) https://%{HTTP_HOST}$1 [R=301]\n",
    "RewriteEngine On\nRewriteCond %{SERVER_PORT} !^443$\n"
    "RewriteRule ^(.*)$ https://%{HTTP_HOST}$1 [L,R=301]\n",
    # what certbot writes
    "RewriteEngine on\nRewriteCond %{SERVER_NAME} =www.example.com\n"
    "RewriteRule ^ https://%{SERVER_NAME}%{REQUEST_URI} [END,NE,R=permanent]\n",
])
def test_a_vhost_that_only_redirects_makes_redirect_https(body: str) -> None:
    vhost = plain_vhost(body, address="*:80") + "<VirtualHost *:80>\nServerName other\n" \
        "Redirect permanent / https://other/\n</VirtualHost>\n"
    text, config = load(FRONT + vhost)
    plain = listener(config, 80)
    assert (plain.redirect_https, plain.https_port, plain.tls) == (True, 443, False)
    assert listener(config, 443).tls
    assert "redirect_https = true" in text
    # the default vhost (the first of port 80) sent every other host to its fixed one, or
    # its conditions held for its own names only: hbfork keeps the host asked for
    default_noted = [n for n in notes(text) if "www.example.com" in n and "redirect" in n]
    assert default_noted or "%{HTTP_HOST}" in body or "SERVER_NAME}/" in body, notes(text)
    # no route is made for what only redirects: the TLS vhost's routes serve every host
    assert forward(config, "www.example.com", "/x") == ("app", "/x")


def test_redirect_https_port_and_status_as_the_redirect_says() -> None:
    text, config = load(FRONT + plain_vhost("Redirect / https://www.example.com:8443/\n"))
    plain = listener(config, 80)
    assert (plain.redirect_https, plain.https_port) == (True, 8443)
    found = "\n".join(notes(text))
    assert "the status of Redirect / https://www.example.com:8443/" in found
    assert "answers 301, Apache answered 302" in found


def test_a_named_vhost_redirecting_to_its_own_name_has_no_caveat() -> None:
    text, config = load(FRONT + plain_vhost("RewriteEngine On\nRewriteRule ^ "
                                            "https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n",
                                            name="api.example.com")
                        + plain_vhost("Redirect permanent / https://www.example.com/\n"))
    assert listener(config, 80).redirect_https
    assert notes(text) == []


@pytest.mark.parametrize(("body", "reason"), [
    ("Redirect permanent /old https://www.example.com/\n", "redirects only the paths /old"),
    ("Redirect permanent / https://www.example.com/app/\n", "not to the same path"),
    ("Redirect permanent / https://www.example.com\n", "not to the same path"),
    ("RewriteEngine On\nRewriteCond %{REQUEST_URI} !^/\\.well-known/\n"
     "RewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n",
     "a condition hbfork cannot take"),
    ("RewriteEngine On\nRewriteRule ^/app https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n",
     "redirects only the paths ^/app"),
    ("RewriteEngine On\nRewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [L]\n",
     "not a plain redirect"),
    ("RewriteEngine On\nRewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n"
     "RewriteRule ^/x /y\n", "mod_rewrite rules other than one redirect"),
    ("Redirect permanent / https://www.example.com/\nProxyPass /api balancer://app/\n",
     "does not only redirect (it proxies)"),
])
def test_redirects_hbfork_cannot_take_are_noted_and_the_listener_stays_plain(
        body: str, reason: str) -> None:
    text, config = load(FRONT + plain_vhost(body))
    assert not listener(config, 80).redirect_https
    assert any(reason in n for n in notes(text)), notes(text)


def test_a_rewrite_engine_left_off_redirects_nothing() -> None:
    text, config = load(FRONT + plain_vhost(
        "RewriteEngine Off\nRewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n"))
    assert not listener(config, 80).redirect_https
    assert not any("Rewrite" in n for n in notes(text))


def test_one_vhost_of_the_port_that_proxies_keeps_the_listener_plain() -> None:
    text, config = load(FRONT + plain_vhost("Redirect permanent / https://www.example.com/\n")
                        + plain_vhost("ProxyPass / balancer://app/\n", "api.example.com"))
    assert not listener(config, 80).redirect_https
    assert any("hbfork redirects a whole listener to https, and <VirtualHost *:80>" in n
               for n in notes(text))
    assert forward(config, "api.example.com", "/x") == ("app", "/x")


def test_the_main_servers_redirect_applies_in_every_vhost() -> None:
    # mod_alias merges the main server's Redirect into every vhost (after the vhost's own)
    text, config = load("Listen 80\nListen 443\nRedirect permanent / https://www.example.com/\n"
                        + POOL + plain_vhost("") + tls_vhost())
    assert listener(config, 80).redirect_https
    # ... into the TLS vhost too (a loop in Apache), where hbfork has no redirect
    assert any("Redirect permanent / https://www.example.com/ in <VirtualHost *:443>" in n
               and "redirects only on plain listeners" in n for n in notes(text)), notes(text)


def test_the_recipe_in_a_tls_vhost_does_nothing_there_and_is_not_noted() -> None:
    recipe = ("RewriteEngine On\nRewriteCond %{HTTPS} off\n"
              "RewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} [R=301,L]\n")
    text, config = load("Listen 80\nListen 443\n" + POOL + plain_vhost(recipe)
                        + tls_vhost(extra=recipe))
    assert listener(config, 80).redirect_https
    assert notes(text) == []


def test_a_redirect_in_a_location_is_noted() -> None:
    text, config = load(FRONT + plain_vhost(
        "<Location />\nRedirect permanent https://www.example.com/\n</Location>\n"))
    assert not listener(config, 80).redirect_https
    assert any("inside <Location />" in n for n in notes(text))


# --- Strict-Transport-Security


@pytest.mark.parametrize(("line", "hsts", "subdomains"), [
    ('Header always set Strict-Transport-Security "max-age=63072000; includeSubDomains"',
     63072000, True),
    ('Header set Strict-Transport-Security "max-age=31536000"', 31536000, False),
    ('Header always set Strict-Transport-Security "max-age=300" env=HTTPS', 300, False),
    ("Header always set Strict-Transport-Security \"max-age=300\" \"expr=%{HTTPS} == 'on'\"",
     300, False),
    ('Header onsuccess add strict-transport-security "max-age=\\"600\\"; includesubdomains"',
     600, True),
])
def test_hsts_header_becomes_the_tls_listeners_hsts(line: str, hsts: int,
                                                     subdomains: bool) -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost(extra=line + "\n"))
    tls = listener(config, 443)
    assert (tls.hsts, tls.hsts_subdomains) == (hsts, subdomains)
    assert notes(text) == []


@pytest.mark.parametrize(("line", "hsts", "reason"), [
    ('Header always set Strict-Transport-Security "max-age=63072000; preload"', 63072000,
     "preload: hbfork sends max-age and includeSubDomains only"),
    ('Header always set Strict-Transport-Security "max-age=99999999"', 63072000,
     "hbfork's limit is 63072000"),
    ('Header always set Strict-Transport-Security "max-age=0"', 0, "max-age=0"),
    ('Header always set Strict-Transport-Security "max-age=300" env=FOO', 0,
     "a condition hbfork cannot evaluate"),
    ('Header always edit Strict-Transport-Security x y', 0, "Header edit of the header"),
])
def test_hsts_hbfork_cannot_send_as_it_is_is_noted(line: str, hsts: int, reason: str) -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost(extra=line + "\n"))
    assert listener(config, 443).hsts == hsts
    assert any(reason in n for n in notes(text)), notes(text)


def test_the_main_servers_hsts_and_a_vhost_that_unsets_it() -> None:
    header = 'Header always set Strict-Transport-Security "max-age=600"\n'
    text, config = load("Listen 443\nListen 8443\n" + header + POOL + tls_vhost()
                        + tls_vhost("api.example.com", address="*:8443",
                                    extra="Header always unset Strict-Transport-Security\n"))
    assert (listener(config, 443).hsts, listener(config, 8443).hsts) == (600, 0)
    assert [n.split(" — ")[1] for n in notes(text)] == [
        "hbfork has one default certificate for every TLS listener: the first TLS vhost's, "
        "not the one of <VirtualHost *:8443> (/etc/httpd/httpd.conf:13)"]


def test_tls_vhosts_of_one_listener_that_disagree_are_noted() -> None:
    text, config = load("Listen 443\n" + POOL + tls_vhost(
        extra='Header always set Strict-Transport-Security "max-age=600"\n')
        + tls_vhost("api.example.com"))
    assert listener(config, 443).hsts == 600
    assert any("one HSTS header per listener" in n and "not this vhost's (none)" in n
               for n in notes(text))


def test_hsts_on_a_plain_vhost_is_noted() -> None:
    text, config = load(FRONT + plain_vhost(
        "Redirect permanent / https://www.example.com/\n"
        'Header always set Strict-Transport-Security "max-age=600"\n'))
    assert listener(config, 80).redirect_https and listener(config, 443).hsts == 0
    assert any("browsers ignore it (RFC 6797)" in n for n in notes(text))
    assert "Strict-Transport-Security" not in comments(text).split("not translated")[0]


def test_the_main_servers_proxy_pass_keeps_a_mod_alias_redirecting_port_plain() -> None:
    # the main server's ProxyPass lines are tried in every vhost, before mod_alias redirects
    text, config = load("Listen 80\nListen 443\n" + POOL + "ProxyPass /api balancer://app/\n"
                        + plain_vhost("Redirect permanent / https://www.example.com/\n")
                        + tls_vhost())
    assert not listener(config, 80).redirect_https
    assert any("the main server's ProxyPass lines apply in it" in n for n in notes(text))


def test_mod_rewrite_redirects_before_proxy_pass() -> None:
    text, config = load("Listen 80\nListen 443\n" + POOL + "ProxyPass /api balancer://app/\n"
                        + plain_vhost("RewriteEngine On\nRewriteRule ^ https://%{HTTP_HOST}"
                                      "%{REQUEST_URI} [R=301,L]\nProxyPass / balancer://app/\n")
                        + tls_vhost())
    assert listener(config, 80).redirect_https
    assert [n.split(" — ")[1] for n in notes(text)] == [
        "its ProxyPass lines are never used: RewriteRule ^ https://%{HTTP_HOST}%{REQUEST_URI} "
        "[R=301,L] (/etc/httpd/httpd.conf:10) redirects every request before them (in Apache "
        "too)"]


def test_rewrite_rules_that_do_not_go_to_https_are_no_redirect() -> None:
    text, config = load(FRONT + plain_vhost("RewriteEngine On\nRewriteRule ^/old /new [PT]\n"
                                            "ProxyPass / balancer://app/\n", "api.example.com"))
    assert not listener(config, 80).redirect_https
    # an internal rewrite changes what members see: listed by line, never skipped in silence
    listed = notes(text)
    assert len(listed) == 1 and "RewriteRule ^/old /new [PT]" in listed[0], listed
    assert forward(config, "api.example.com", "/x") == ("app", "/x")
