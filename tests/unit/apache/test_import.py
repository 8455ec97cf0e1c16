"""`hbfork import-apache`: translation of whole configs (hbfork.apache_collect,
hbfork.apache_translate), TOML rendering and the command."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbfork.apache.conf import ApacheConfigError, parse_envvars
from hbfork.apache.include import DiskSource, Walker
from hbfork.apache.render import render
from hbfork.apache.translate import translate
from hbfork.cli.main import main
from hbfork.core import config as config_module
from hbfork.core.routes import compile_routes, shadowed
from tests.unit.apache.importing import (
    DATA,
    comments,
    fake_resolve,
    forward,
    notes,
    route_of,
    translate_file,
    translate_text,
)

DEBIAN = Path("/etc/apache2/apache2.conf")
LAB_ENV = {  # what tests/interop gives the lab configs (they use ${VAR}s, as Apache allows)
    "HB_DIR": "/srv/lab/front", "HB_ADDR": "10.213.0.1", "HB_GROUP": "239.0.0.1:27999",
    "HB_STORAGE": "/srv/lab/hb/hb.dat", "HB_MEMBER1": "10.213.0.11:8080",
    "HB_MEMBER2": "10.213.0.12:8080", "HB_MEMBER3": "10.213.0.13:8080", "HB_NAME": "b1",
    "HB_THREADS": "5", "HB_USER": "www-data", "HB_GROUP_NAME": "www-data",
}


# --- any input


DIRECTIVES = st.sampled_from([
    "Listen", "BalancerMember", "ProxyPass", "ProxyPassMatch", "ProxyPassReverse", "ProxySet",
    "ProxyPassReverseCookiePath", "ProxyPassReverseCookieDomain", "ProxyPreserveHost",
    "ServerName", "ServerAlias", "HeartbeatListen", "HeartbeatMaxServers", "HeartbeatStorage",
    "User", "Timeout", "KeepAliveTimeout", "ProxyTimeout", "SetHandler", "Define A",
    "<Proxy balancer://a>", "<Proxy balancer://b>", "</Proxy>", "<VirtualHost *:80>",
    "<VirtualHost *:81>", "</VirtualHost>", "<Location />", "<Location /a>", "</Location>",
    "<IfModule x>", "</IfModule>", "Header add Set-Cookie", "Listen 443", "Listen 8443 https",
    "<VirtualHost *:443>", "SSLEngine", "SSLCertificateFile", "SSLCertificateKeyFile",
    "SSLCertificateChainFile", "SSLProtocol", "SSLCipherSuite", "SSLHonorCipherOrder",
    "SSLSessionTickets", "SSLVerifyClient", "Header always set Strict-Transport-Security",
    "Redirect", "RedirectMatch", "RewriteEngine", "RewriteCond", "RewriteRule"])
ARGUMENTS = st.sampled_from([
    "80", "/", "/a", "/a/", "^/(.*)$", "\\.x$", "(", "balancer://a/", "balancer://b",
    "balancer://a/$1", "http://10.0.0.1:8080", "http://10.0.0.2:81/x/", "http://[::1]",
    "http://host", "!", "On", "Off", "www.example.com", "*.example.com", "a*b", "status=+H",
    "status=-D+E", "status=N", "lbset=70000", "retry=99999", "retry=5", "timeout=0",
    "connectiontimeout=1ms", "lbmethod=heartbeat", "maxattempts=500", "route=r1", "route=r2",
    "stickysession=JSESSIONID|jsessionid", "stickysession=A|B|C", "nofailover=On",
    "stickysessionsep=off", "1.2.3.4:99", "0", "${A}", "x=y", '"a b"', "balancer-manager",
    "#1", "nocanon", '"ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/"', "off", "optional",
    "cert.pem", "/etc/ssl/a.pem", "all", "-SSLv3", "+TLSv1.3", "TLSv1.3", "HIGH:!aNULL", "NONE",
    '"max-age=600; includeSubDomains"', '"max-age=0"', "permanent", "https://www.example.com/",
    "https://%{HTTP_HOST}%{REQUEST_URI}", "^", "[R=301,L]", "%{HTTPS}", "env=HTTPS"])


MEMBER_PARAMETERS = st.sampled_from([
    "lbset=0", "lbset=1", "lbset=99", "lbset=100", "status=+H", "status=+R", "status=D",
    "status=-D+E", "retry=0", "retry=99999", "timeout=0", "timeout=100000",
    "connectiontimeout=1ms", "connectiontimeout=700", "route=r1", "loadfactor=3", "max=5"])
SERVER_LINES = st.sampled_from([
    "HeartbeatListen 239.0.0.1:27999", "HeartbeatListen 10.0.0.1:5000", "HeartbeatMaxServers 0",
    "HeartbeatMaxServers 99999", "HeartbeatStorage hb.dat", "Timeout 0", "Timeout 99999",
    "KeepAliveTimeout 100ms", "ProxyTimeout 5", "Listen 80", "Listen [::]:8080",
    "ProxyAddHeaders Off", "User nobody", "ProxySet balancer://a maxattempts=500",
    "Listen 8081", "Listen 127.0.0.1:8081", "User ${UNDEFINED}", "HeartbeatStorage ${X}/hb"])


def apache_front(members: list, route: list, server: list) -> str:
    body = "".join(f"  BalancerMember http://10.0.{n // 250}.{n % 250 + 1}:80 {' '.join(p)}\n"
                   for n, p in enumerate(members))
    return (f"<Proxy balancer://a>\n{body}</Proxy>\n"
            f"ProxyPass / balancer://a/ {' '.join(route)}\n" + "\n".join(server) + "\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(MEMBER_PARAMETERS, max_size=3), max_size=6),
       st.lists(st.sampled_from(["lbmethod=heartbeat", "maxattempts=1000", "nofailover=On"]),
                max_size=2),
       st.lists(SERVER_LINES, max_size=6))
def test_any_front_translates_to_toml_that_loads(members: list, route: list,
                                                 server: list) -> None:
    rendered, _ = translate_text(apache_front(members, route, server))
    config_module.loads(rendered, resolve=fake_resolve)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(DIRECTIVES, st.lists(ARGUMENTS, max_size=3)), max_size=15))
def test_any_config_that_parses_translates_to_toml_that_loads(lines: list) -> None:
    text = "\n".join(f"{name} {' '.join(args)}" for name, args in lines)
    try:
        rendered, _ = translate_text(text)
    except ApacheConfigError:
        return
    config_module.loads(rendered, resolve=fake_resolve)


# --- translation of the sample configs


def test_documentation_front() -> None:
    text, config = translate_file(DATA / "front-docs.conf")
    assert [str(e) for e in config.proxy.listen] == ["10.0.0.1:8080", "[::1]:8080"]
    assert config.proxy.mode == "http"
    assert config.proxy.retry == 60                      # Apache's default, server-wide
    assert (config.proxy.user, config.proxy.group) == ("apache", "apache")
    assert str(config.heartbeat.listen) == "239.0.0.1:27999"
    # relative HeartbeatStorage is under DefaultRuntimeDir, as mod_heartmonitor resolves it
    assert config.heartbeat.storage == "/run/httpd/hb/hb.dat"
    assert config.http.response_timeout == 30   # the vhost's ProxyTimeout beats Timeout
    assert config.http.client_timeout == 120 and config.http.keepalive_timeout == 7
    pool = config.pool("hb")
    assert (pool.retries, pool.retry) == (2, 30)         # maxattempts=2; retry=30 on every member
    members = {str(m.address): m for m in pool.members}
    assert list(members) == ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080",
                             "10.0.0.14:8080"]
    assert members["10.0.0.11:8080"].route == "web1"
    assert members["10.0.0.13:8080"].standby             # +H: hot standby
    assert members["10.0.0.14:8080"].disabled            # +D
    assert not any(m.disabled for a, m in members.items() if a != "10.0.0.14:8080")
    assert "Apache's lbmethod=heartbeat ignored lbset and hot standby" in comments(text)
    # the only vhost is the default one: its routes serve every host
    assert route_of(config, "anything.example", "/static/x.css").passes is False
    found = route_of(config, "www.example.com", "/app")
    assert (found.pool, found.preserve_host, found.reverse) == ("hb", False, True)
    found = notes(text)
    assert any("SetHandler balancer-manager" in n for n in found)
    assert not any("Listen 443" in n for n in found)     # inside an unloaded <IfModule>
    assert "cannot change what a client or member sees" in text


def test_split_front_with_includes() -> None:
    root = DATA / "front-split"
    text, config = translate_file(root / "main.conf", server_root=root)
    assert [str(e) for e in config.proxy.listen] == ["0.0.0.0:80"]
    assert str(config.heartbeat.listen) == "239.0.0.2:27998"
    assert config.heartbeat.max_members == 20
    assert config.http.forwarded_headers is False
    assert [(str(m.address), m.lbset) for m in config.pool("cluster").members] == [
        ("10.1.0.11:8001", 1), ("10.1.0.12:8001", 1), ("10.1.0.13:8001", 0)]
    assert config.proxy.retry == 60                      # Apache's default retry
    assert "10.9.9.9" not in text                        # README.txt is not *.conf
    assert "lbmethod=heartbeat ignored lbset" in text    # set on the ProxyPass line
    assert route_of(config, "x", "/a").pool == "cluster"
    assert notes(text) == []


def test_byrequests_front_notes_what_does_not_carry_over() -> None:
    text, config = translate_file(DATA / "front-byrequests.conf")
    app = config.pool("app")
    # app3.internal is kept by name: it stands for the address it resolves to
    assert [str(m.address) for m in app.members] == ["192.168.1.10:9000", "192.168.1.12:9000",
                                                     fake_resolve("app3.internal")[0] + ":9000"]
    assert 'address = "app3.internal:9000"' in text
    assert app.stickysession == "JSESSIONID"
    assert [str(m.address) for m in config.pool("other").members] == ["192.168.2.10:9000"]
    # timings differ between the members: the pool keeps the server-wide values
    assert (app.retry, app.connect_timeout, app.response_timeout) == (None, None, None)
    assert config.proxy.retry == 60
    assert "lbmethod=byrequests" in text
    # ProxyPass /api balancer://other/: the trailing slashes disagree, Apache sends //x
    api = route_of(config, "h", "/api/x")
    assert (api.pool, api.rewrite, api.preserve_host) == ("other", "", False)
    assert "a double slash" in comments(text)
    assert route_of(config, "h", "/x").reverse
    joined = "\n".join(notes(text))
    for expected in ("Listen localhost:8001", "https while the other members",
                     "ajp while the other members",
                     "its path /app differs", "max=20", "ttl=60", "ProxyRequests On",
                     "retry=5/15", "timeout=20/unset"):
        assert expected in joined, expected


ROUTING_ENV = {"HB_DIR": "/srv/lab/front", "HB_ADDR": "10.213.0.1", "HB_USER": "www-data",
               "HB_GROUP_NAME": "www-data", "HB_GROUP": "239.0.0.1:27999"}


def routing_config(name: str) -> tuple[str, config_module.Config]:
    """One of the three fronts tests/interop/test_apache_routing.py runs for real."""
    text, config = translate_file(DATA / name, env=ROUTING_ENV)
    assert shadowed(compile_routes(config.routes)) == []   # `hbfork check` warns of nothing
    return text, config


def test_tomcat_cluster() -> None:
    text, config = routing_config("tomcat-cluster.conf")
    tomcat = config.pool("tomcat")
    assert [(str(m.address), m.route) for m in tomcat.members] == [
        ("10.213.0.11:8080", "node1"), ("10.213.0.12:8080", "node2"),
        ("10.213.0.13:8080", "node3")]
    assert tomcat.sticky_names == ("JSESSIONID", "jsessionid") and not tomcat.nofailover
    assert (tomcat.retry, tomcat.connect_timeout, tomcat.response_timeout) == (30, 2, 20)
    assert forward(config, "shop.example.com", "/manager/html") == (404, "")
    assert forward(config, "shop.example.com", "/cart;jsessionid=A.node2?x=1") == \
        ("tomcat", "/shop/cart;jsessionid=A.node2?x=1")
    root = route_of(config, "any", "/")
    assert root is not None and (root.reverse, root.preserve_host) == (True, False)
    assert root.reverse_cookie_path == (("/shop", "/"),)
    assert notes(text) == []


def test_vhosts_with_static_exclusions() -> None:
    text, config = routing_config("vhosts-static.conf")
    assert {p.name for p in config.pools} == {"www", "blog", "10.213.0.13-8080"}
    www = ("www.example.com", "example.com", "other.example.net")
    for host in www:
        assert forward(config, host, "/static/app.css") == (404, "")
        assert forward(config, host, "/server-status") == (404, "")
        assert forward(config, host, "/x") == ("www", "/x")
        assert route_of(config, host, "/x").preserve_host        # ProxyPreserveHost On
    for host in ("blog.example.com", "a.blog.example.com"):
        assert forward(config, host, "/blog/post") == ("blog", "/post")
        assert forward(config, host, "/admin/users") == ("blog", "/wp-admin/users")
        assert forward(config, host, "/x") == (404, "")           # stays in the blog vhost
        assert forward(config, host, "/server-status") == (404, "")
        assert not route_of(config, host, "/blog/").preserve_host
    acme = "/.well-known/acme-challenge/t"
    assert forward(config, "blog.example.com", acme) == ("10.213.0.13-8080",
                                                         "/acme/acme-challenge/t")
    assert forward(config, "www.example.com", acme)[0] == "10.213.0.13-8080"
    assert route_of(config, "www.example.com", acme).preserve_host
    assert not route_of(config, "blog.example.com", acme).preserve_host
    assert route_of(config, "blog.example.com", "/blog/").reverse_cookie_domain == (
        ("10.213.0.13", "blog.example.com"),)
    assert notes(text) == []


def test_api_with_hot_standby() -> None:
    text, config = routing_config("api-standby.conf")
    api = config.pool("api")
    assert [(m.route, m.standby, m.disabled) for m in api.members] == [
        ("a1", False, False), ("a2", False, False), ("standby", True, False),
        ("retired", False, True)]
    assert (api.stickysession, api.nofailover, api.sticky_cookie) == ("ROUTEID", True,
                                                                      "ROUTEID")
    assert str(config.heartbeat.listen) == "239.0.0.1:27999"
    assert forward(config, "api.example.com", "/api/v2/users?page=2") == ("api",
                                                                          "/users?page=2")
    assert forward(config, "api.example.com", "/api/v3/users") == ("api", "/legacy/v3/users")
    assert forward(config, "api.example.com", "/out/r.csv") == ("reports", "/out/r.csv")
    assert forward(config, "api.example.com", "/health") == (404, "")
    assert route_of(config, "h", "/api/v3/").reverse
    assert route_of(config, "h", "/api/v1/x").preserve_host
    assert config.http.response_timeout == 15
    assert notes(text) == []


def test_lab_heartmonitor_front() -> None:
    text, config = translate_file(DATA / "lab-front-heartmonitor.conf", env=LAB_ENV)
    assert [str(e) for e in config.proxy.listen] == ["10.213.0.1:80"]
    assert str(config.heartbeat.listen) == "239.0.0.1:27999"
    assert config.heartbeat.storage == "/srv/lab/hb/hb.dat"
    assert [str(m.address) for m in config.pool("lab").members] == ["10.213.0.11:8080",
                                                                     "10.213.0.12:8080"]
    assert config.proxy.user == "www-data"
    assert notes(text) == []


def test_lab_lbmethod_front_reads_the_file_as_a_source() -> None:
    text, config = translate_file(DATA / "lab-front-lbmethod.conf", env=LAB_ENV)
    assert config.heartbeat.source == "file:/srv/lab/hb/hb.dat"
    assert len(config.pool("lab").members) == 3
    # Apache received no heartbeats here: no multicast join (it would need a route)
    assert str(config.heartbeat.listen) == "127.0.0.1:27999"
    # mod_heartmonitor's file says port=80 for Apache backends; these members are on 8080
    assert "10.213.0.13:8080 would be rejected (unknown_port)" in comments(text)


def test_lab_backend_is_recognised_as_a_backend() -> None:
    text, config = translate_file(DATA / "lab-backend.conf", env=LAB_ENV)
    assert config.heartbeat.discover and not config.routes
    assert any("HeartbeatAddress 239.0.0.1:27999" in n and "hbfork beat --to" in n
               for n in notes(text))


def test_unresolved_variables_are_noted_not_guessed() -> None:
    text, config = translate_file(DATA / "lab-front-heartmonitor.conf", env={})
    assert config.heartbeat.discover and all(not p.members for p in config.pools)
    found = notes(text)
    for name in ("HB_MEMBER1", "HB_ADDR", "HB_GROUP", "HB_USER"):
        assert any(f"${{{name}}} not defined here" in n and "--envvars" in n for n in found)
    # the variable held an absolute path: it is not put under ServerRoot or the runtime dir
    assert "The heartbeat file ${HB_STORAGE} uses a variable" in comments(text)


@pytest.mark.parametrize(("listen", "status"), [
    ("Listen 8081", "127.0.0.1:8082"), ("Listen 127.0.0.1:8081", "127.0.0.1:8082"),
    ("Listen 8081\nListen 127.0.0.1:8082", "127.0.0.1:8083"),
    ("Listen [::]:8081", None), ("Listen 10.0.0.1:8081", None)])
def test_status_page_moves_off_a_port_apache_served(listen: str, status: str | None) -> None:
    text, _ = translate_text(f"{listen}\nBalancerMember balancer://b http://10.0.0.1\n"
                             "ProxyPass / balancer://b/\n")
    config = config_module.loads(text, resolve=fake_resolve)
    if status is None:
        assert "[status]" not in text
    else:
        assert str(config.status.listen) == status
        assert "is taken by [proxy] listen" in comments(text)


def test_nothing_to_translate_still_loads() -> None:
    text, translation = translate_text("ServerName example.com\nDocumentRoot /srv\n")
    config = config_module.loads(text, resolve=fake_resolve)
    assert config.heartbeat.discover and translation.unrelated == 1
    assert not config.routes and "1 other directive(s)" in text


def test_strings_are_escaped_for_toml() -> None:
    text, _ = translate_text('User "we\\"ird"\nGroup "tab\there"\n'
                             "BalancerMember balancer://b http://10.0.0.1 route=a\"b\n"
                             "ProxyPass / balancer://b/\n")
    config = config_module.loads(text, resolve=fake_resolve)
    assert config.proxy.user == 'we"ird' and config.pool("b").members[0].route == 'a"b'


# --- Debian's stock tree, as installed and as a heartbeat front


def debian_front(tmp_path: Path, site: str = "hb-front.conf", modules: tuple[str, ...] = ()) \
        -> Path:
    """Debian's /etc/apache2 turned into a heartbeat front the way an operator does it:
    a2enmod proxy_http proxy_balancer heartmonitor lbmethod_heartbeat (and `modules`), a conf,
    a site."""
    root = tmp_path / "apache2"
    shutil.copytree(DEBIAN.parent, root, symlinks=True)
    for module in ("proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "heartmonitor",
                   "lbmethod_heartbeat", *modules):
        for kind in ("load", "conf"):
            link = root / "mods-enabled" / f"{module}.{kind}"
            if (root / "mods-available" / link.name).exists() and not link.exists():
                link.symlink_to(f"../mods-available/{link.name}")
    (root / "sites-enabled" / "000-default.conf").unlink(missing_ok=True)
    for kind, name, enabled in (("conf", "heartmonitor.conf", "conf-enabled"),
                                ("sites", site, "sites-enabled")):
        shutil.copy(DATA / "debian-front" / f"{kind}-available" / name,
                    root / f"{kind}-available" / name)
        (root / enabled / name).symlink_to(f"../{kind}-available/{name}")
    return root


@pytest.mark.skipif(not DEBIAN.exists(), reason="no /etc/apache2/apache2.conf (Debian's apache2)")
def test_debian_stock_config() -> None:
    text, config = translate_file(DEBIAN)
    walked = Walker(DiskSource(), str(DEBIAN.parent), {}).walk(str(DEBIAN))
    assert len(walked.files) > 5                        # mods-enabled, conf-enabled, sites...
    assert any(f.endswith("ports.conf") for f in walked.files)
    assert "0.0.0.0:80" in [str(e) for e in config.proxy.listen]
    assert config.heartbeat.discover                     # the stock config balances nothing
    if (DEBIAN.parent / "envvars").exists():
        env = parse_envvars((DEBIAN.parent / "envvars").read_text())
        text, config = translate_file(DEBIAN, env=env)
        assert config.proxy.user == env.get("APACHE_RUN_USER")
    assert "${" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))


@pytest.mark.skipif(not DEBIAN.exists(), reason="no /etc/apache2/apache2.conf (Debian's apache2)")
def test_debian_heartbeat_front(tmp_path: Path) -> None:
    root = debian_front(tmp_path)
    env = parse_envvars((root / "envvars").read_text())
    text, config = translate_file(root / "apache2.conf", env=env)
    assert [str(e) for e in config.proxy.listen] == ["0.0.0.0:80"]
    assert str(config.heartbeat.listen) == "239.0.0.1:27999"
    assert config.heartbeat.storage == "/var/lib/apache2/heartbeat/hb.dat"
    app, api = config.pool("app"), config.pool("api")
    assert [(str(m.address), m.route, m.standby) for m in app.members] == [
        ("10.0.0.11:8080", "node1", False), ("10.0.0.12:8080", "node2", False),
        ("10.0.0.13:8080", "spare", True)]
    assert (app.stickysession, app.retries) == ("JSESSIONID|jsessionid", 2)
    assert [str(m.address) for m in api.members] == ["10.0.0.21:9000", "10.0.0.22:9000"]
    assert (config.proxy.retry, api.retry, config.http.response_timeout) == (60, 10, 30)
    assert forward(config, "www.example.com", "/balancer-manager/") == (404, "")
    assert forward(config, "example.com", "/static/a.css") == (404, "")
    assert forward(config, "www.example.com", "/api/v1/users?page=2") == ("api",
                                                                          "/users?page=2")
    assert forward(config, "www.example.com", "/x?y") == ("app", "/x?y")
    root = route_of(config, "www.example.com", "/x")
    assert root is not None and root.preserve_host and root.reverse  # ProxyPreserveHost On
    assert config.proxy.user == env["APACHE_RUN_USER"]
    found = "\n".join(notes(text))
    assert "SetHandler balancer-manager" in found
    assert "${" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))


# --- the command


def test_command_prints_toml_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-apache", str(DATA / "front-docs.conf")]) == 0
    out, err = capsys.readouterr()
    assert config_module.loads(out).pools and "1 pool(s), 4 member(s), 2 route(s)" in err


def test_command_server_root_option(capsys: pytest.CaptureFixture[str]) -> None:
    root = DATA / "front-split"
    assert main(["import-apache", "-d", str(root), str(root / "main.conf")]) == 0
    assert len(config_module.loads(capsys.readouterr().out).pool("cluster").members) == 3


def test_command_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-apache", str(tmp_path / "missing.conf")]) == 2
    err = capsys.readouterr().err
    assert "missing.conf" in err and "No such file or directory" in err
    assert main(["import-apache", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_command_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("<Proxy balancer://x>\nBalancerMember http://10.0.0.1\n")
    assert main(["import-apache", str(bad)]) == 2
    assert f"{bad}:1: <Proxy> is never closed" in capsys.readouterr().err


def test_command_envvars_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "front.conf"
    conf.write_text("User ${RUN_AS}\nListen ${ADDR}:80\n")
    envvars = tmp_path / "vars.sh"
    envvars.write_text("export RUN_AS=proxyuser\nexport ADDR=10.1.2.3\n")
    os.chmod(envvars, 0o644)
    assert main(["import-apache", "--envvars", str(envvars), str(conf)]) == 0
    config = config_module.loads(capsys.readouterr().out)
    assert config.proxy.user == "proxyuser" and str(config.proxy.listen[0]) == "10.1.2.3:80"


MOVING = Path(__file__).resolve().parents[3] / "docs" / "apache.md"  # "Moving from Apache"


def _block(text: str, after: str, kind: str) -> list[str]:
    start = text.index(f"```{kind}\n", text.index(after)) + len(kind) + 4
    return text[start:text.index("```", start)].splitlines()


def _in_order(wanted: list[str], have: list[str]) -> list[str]:
    """The wanted lines not found in `have` in that order (a trimmed copy may skip lines)."""
    rest = iter(have)
    return [line for line in wanted if line not in rest]


class MovedSource(DiskSource):
    """The files of `root` as if they were in /etc/apache2 (names in the output, and so the
    wrapping of comments, are then the same as on a real Debian front)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def expand(self, pattern: str) -> list[str]:
        found = super().expand(pattern.replace(str(DEBIAN.parent), self.root, 1))
        return [path.replace(self.root, str(DEBIAN.parent), 1) for path in found]

    def read(self, path: str) -> str:
        return super().read(path.replace(str(DEBIAN.parent), self.root, 1))


@pytest.mark.skipif(not DEBIAN.exists(), reason="no /etc/apache2/apache2.conf (Debian's apache2)")
def test_manual_side_by_side_is_what_import_apache_prints(tmp_path: Path) -> None:
    root = debian_front(tmp_path)
    env = parse_envvars((root / "envvars").read_text())
    walked = Walker(MovedSource(root), str(DEBIAN.parent), env).walk(str(DEBIAN))
    printed = render(translate(walked), str(DEBIAN), walked).splitlines()
    page = MOVING.read_text()
    shown = [line for line in _block(page, "What `hbfork import-apache", "toml")
             if line and not line.startswith("# (")]
    assert _in_order(shown, printed) == []
    site = (DATA / "debian-front" / "sites-available" / "hb-front.conf").read_text()
    apache = _block(page, "## Side by side", "apache")
    assert _in_order([line for line in apache[apache.index("<VirtualHost *:80>"):] if line],
                     site.splitlines()) == []
