"""`hbfork import-apache`: translation of whole configs (hbfork.apache_collect,
hbfork.apache_translate), TOML rendering and the command."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbfork.apache import render as ai
from hbfork.apache.conf import ApacheConfigError, parse_envvars
from hbfork.apache.include import DiskSource, Walker
from hbfork.apache.translate import Translation, translate
from hbfork.cli.main import main
from hbfork.core import config as config_module
from tests.unit.apache.test_include import walk

DATA = Path(__file__).resolve().parents[2] / "data" / "apache"
DEBIAN = Path("/etc/apache2/apache2.conf")
NOTE = re.compile(r"^# not translated: .+ \(.+:\d+\) — .+$")
LAB_ENV = {  # what tests/interop gives the lab configs (they use ${VAR}s, as Apache allows)
    "HB_DIR": "/srv/lab/front", "HB_ADDR": "10.213.0.1", "HB_GROUP": "239.0.0.1:27999",
    "HB_STORAGE": "/srv/lab/hb/hb.dat", "HB_MEMBER1": "10.213.0.11:8080",
    "HB_MEMBER2": "10.213.0.12:8080", "HB_MEMBER3": "10.213.0.13:8080", "HB_NAME": "b1",
    "HB_THREADS": "5", "HB_USER": "www-data", "HB_GROUP_NAME": "www-data",
}


def translate_text(text: str, **kwargs) -> tuple[str, Translation]:
    walked = walk({"/etc/httpd/httpd.conf": text}, **kwargs)
    translation = translate(walked)
    return ai.render(translation, "httpd.conf", walked), translation


def translate_file(path: Path, server_root: Path | None = None,
                   env: dict[str, str] | None = None) -> tuple[str, config_module.Config]:
    root = str(server_root or path.parent)
    walked = Walker(DiskSource(), root, env or {}).walk(str(path))
    text = ai.render(translate(walked), str(path), walked)
    return text, config_module.loads(text, str(path))


def comments(text: str) -> str:
    """The comment lines joined into one line, so wrapped sentences can be matched."""
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def notes(text: str) -> list[str]:
    found = [line for line in text.splitlines() if line.startswith("# not translated:")]
    assert all(NOTE.match(line) for line in found), found
    return found


# --- any input


DIRECTIVES = st.sampled_from([
    "Listen", "BalancerMember", "ProxyPass", "ProxyPassReverse", "ProxySet", "HeartbeatListen",
    "HeartbeatMaxServers", "HeartbeatStorage", "User", "Timeout", "KeepAliveTimeout",
    "ProxyTimeout", "SetHandler", "Define A", "<Proxy balancer://a>", "</Proxy>",
    "<VirtualHost *:80>", "</VirtualHost>", "<Location />", "</Location>", "<IfModule x>",
    "</IfModule>"])
ARGUMENTS = st.sampled_from([
    "80", "/", "balancer://a/", "http://10.0.0.1:8080", "http://[::1]", "http://host", "!",
    "status=+H", "status=-D+E", "lbset=70000", "retry=99999", "retry=5", "timeout=0",
    "connectiontimeout=1ms", "lbmethod=heartbeat", "maxattempts=500", "1.2.3.4:99", "0",
    "${A}", "x=y", '"a b"', "balancer-manager", "#1"])


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
    config_module.loads(rendered)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(DIRECTIVES, st.lists(ARGUMENTS, max_size=3)), max_size=15))
def test_any_config_that_parses_translates_to_toml_that_loads(lines: list) -> None:
    text = "\n".join(f"{name} {' '.join(args)}" for name, args in lines)
    try:
        rendered, _ = translate_text(text)
    except ApacheConfigError:
        return
    config_module.loads(rendered)


# --- translation of the sample configs


def test_documentation_front() -> None:
    text, config = translate_file(DATA / "front-docs.conf")
    assert [str(e) for e in config.proxy.listen] == ["10.0.0.1:8080", "[::1]:8080"]
    assert config.proxy.mode == "http"
    assert config.proxy.retry == 30
    assert (config.proxy.user, config.proxy.group) == ("apache", "apache")
    assert str(config.heartbeat.listen) == "239.0.0.1:27999"
    # relative HeartbeatStorage is under DefaultRuntimeDir, as mod_heartmonitor resolves it
    assert config.heartbeat.storage == "/run/httpd/hb/hb.dat"
    assert config.http.retries == 2
    assert config.http.response_timeout == 30   # the vhost's ProxyTimeout beats Timeout
    assert config.http.client_timeout == 120 and config.http.keepalive_timeout == 7
    members = {str(m.address): m for m in config.members}
    assert list(members) == ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080",
                             "10.0.0.14:8080"]
    assert members["10.0.0.11:8080"].name == "web1"
    assert members["10.0.0.13:8080"].lbset == 1          # +H: hot standby -> higher lbset
    assert "hot standby: lbset 1" in text
    assert members["10.0.0.14:8080"].disabled            # +D
    assert not any(m.disabled for a, m in members.items() if a != "10.0.0.14:8080")
    found = notes(text)
    assert any("ProxyPass /static !" in n for n in found)
    assert any("SetHandler balancer-manager" in n for n in found)
    assert not any("Listen 443" in n for n in found)     # inside an unloaded <IfModule>
    assert "do not concern a heartbeat front" in text


def test_split_front_with_includes() -> None:
    root = DATA / "front-split"
    text, config = translate_file(root / "main.conf", server_root=root)
    assert [str(e) for e in config.proxy.listen] == ["0.0.0.0:80"]
    assert str(config.heartbeat.listen) == "239.0.0.2:27998"
    assert config.heartbeat.max_members == 20
    assert config.http.forwarded_headers is False
    assert [(str(m.address), m.lbset) for m in config.members] == [
        ("10.1.0.11:8001", 1), ("10.1.0.12:8001", 1), ("10.1.0.13:8001", 0)]
    assert config.proxy.retry == 60                      # Apache's default retry
    assert "10.9.9.9" not in text                        # README.txt is not *.conf
    assert "lbmethod=heartbeat ignored lbset" in text    # set on the ProxyPass line
    assert notes(text) == []


def test_byrequests_front_notes_what_does_not_carry_over() -> None:
    text, config = translate_file(DATA / "front-byrequests.conf")
    assert [str(m.address) for m in config.members] == [
        "192.168.1.10:9000", "192.168.1.11:9000", "192.168.1.12:9000"]
    assert config.proxy.retry == 5
    assert config.http.connect_timeout == 0.5 and config.http.response_timeout == 20
    assert "lbmethod=byrequests" in text
    joined = "\n".join(notes(text))
    for expected in ("Listen localhost:8001", "app3.internal", "https scheme", "ajp scheme",
                     "stickysession=JSESSIONID", "ProxyPass /api", "<Proxy balancer://other>",
                     "the path /app is dropped", "max=20", "ttl=60", "ProxyRequests On",
                     "ProxyPreserveHost Off", "retry=5/15"):
        assert expected in joined, expected
    assert "192.168.2.10" not in "\n".join(line for line in text.splitlines()
                                          if not line.startswith("#"))


def test_lab_heartmonitor_front() -> None:
    text, config = translate_file(DATA / "lab-front-heartmonitor.conf", env=LAB_ENV)
    assert [str(e) for e in config.proxy.listen] == ["10.213.0.1:80"]
    assert str(config.heartbeat.listen) == "239.0.0.1:27999"
    assert config.heartbeat.storage == "/srv/lab/hb/hb.dat"
    assert [str(m.address) for m in config.members] == ["10.213.0.11:8080", "10.213.0.12:8080"]
    assert config.proxy.user == "www-data"
    assert notes(text) == []


def test_lab_lbmethod_front_reads_the_file_as_a_source() -> None:
    text, config = translate_file(DATA / "lab-front-lbmethod.conf", env=LAB_ENV)
    assert config.heartbeat.source == "file:/srv/lab/hb/hb.dat"
    assert len(config.members) == 3
    # Apache received no heartbeats here: no multicast join (it would need a route)
    assert str(config.heartbeat.listen) == "127.0.0.1:27999"
    # mod_heartmonitor's file says port=80 for Apache backends; these members are on 8080
    assert "10.213.0.13:8080 would be rejected (unknown_port)" in comments(text)


def test_lab_backend_is_recognised_as_a_backend() -> None:
    text, config = translate_file(DATA / "lab-backend.conf", env=LAB_ENV)
    assert config.heartbeat.discover and not config.members
    assert any("HeartbeatAddress 239.0.0.1:27999" in n and "hbfork beat --to" in n
               for n in notes(text))


def test_unresolved_variables_are_noted_not_guessed() -> None:
    text, config = translate_file(DATA / "lab-front-heartmonitor.conf", env={})
    assert config.heartbeat.discover and not config.members
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
    config = config_module.loads(text)
    if status is None:
        assert "[status]" not in text
    else:
        assert str(config.status.listen) == status
        assert "is taken by [proxy] listen" in comments(text)


def test_a_second_proxypass_slash_is_noted_with_the_first() -> None:
    text, translation = translate_text(
        "BalancerMember balancer://a http://10.0.0.1\nBalancerMember balancer://b http://10.0.0.2"
        "\nProxyPass / balancer://a/\n<VirtualHost *:81>\nProxyPass / balancer://b/\n"
        "</VirtualHost>\nProxyStatus On\n")
    assert [m.address for m in translation.members] == ["10.0.0.1:80"]
    found = "\n".join(notes(text))
    assert "the first ProxyPass / (/etc/httpd/httpd.conf:3) was translated" in found
    assert "ProxyStatus On (/etc/httpd/httpd.conf:7) — hbfork's status page" in found


def test_status_flags_accumulate_like_apache() -> None:
    text, translation = translate_text(
        "<Proxy balancer://b>\nBalancerMember http://10.0.0.1 status=+H-D\n"
        "BalancerMember http://10.0.0.2 lbset=2\nBalancerMember http://10.0.0.3 status=-D+S\n"
        "BalancerMember http://10.0.0.4 status=+R+E\n</Proxy>\nProxyPass / balancer://b/\n")
    members = {m.address: m for m in translation.members}
    assert members["10.0.0.1:80"].lbset == 3 and not members["10.0.0.1:80"].disabled
    assert members["10.0.0.3:80"].disabled
    assert members["10.0.0.4:80"].lbset == 3 and "hot spare" in text
    assert any("flag E" in n for n in notes(text))
    config_module.loads(text)


def test_balancer_member_outside_a_proxy_section() -> None:
    text, translation = translate_text(
        "BalancerMember balancer://b http://10.0.0.1:81\nProxySet balancer://b lbmethod=heartbeat"
        "\nBalancerMember http://10.0.0.2\nProxyPass / balancer://b/\n")
    assert [m.address for m in translation.members] == ["10.0.0.1:81"]
    assert any("not inside <Proxy balancer://" in n for n in notes(text))


def test_proxypass_in_a_location_and_a_direct_member() -> None:
    text, translation = translate_text(
        '<Location "/">\nProxyPass http://[fd00::5]:8080/\n</Location>\n')
    assert [m.address for m in translation.members] == ["[fd00::5]:8080"]
    assert "names one server" in text
    config_module.loads(text)


def test_nothing_to_translate_still_loads() -> None:
    text, translation = translate_text("ServerName example.com\nDocumentRoot /srv\n")
    config = config_module.loads(text)
    assert config.heartbeat.discover and translation.unrelated == 2
    assert "2 other directive(s)" in text


def test_strings_are_escaped_for_toml() -> None:
    text, _ = translate_text('User "we\\"ird"\nGroup "tab\there"\n'
                             "BalancerMember balancer://b http://10.0.0.1 route=a\"b\n"
                             "ProxyPass / balancer://b/\n")
    config = config_module.loads(text)
    assert config.proxy.user == 'we"ird' and config.members[0].name == 'a"b'


# --- Debian's stock tree, as installed and as a heartbeat front


def debian_front(tmp_path: Path) -> Path:
    """Debian's /etc/apache2 turned into a heartbeat front the way an operator does it:
    a2enmod proxy_http proxy_balancer heartmonitor lbmethod_heartbeat, a conf, a site."""
    root = tmp_path / "apache2"
    shutil.copytree(DEBIAN.parent, root, symlinks=True)
    for module in ("proxy", "proxy_http", "proxy_balancer", "slotmem_shm", "heartmonitor",
                   "lbmethod_heartbeat"):
        for kind in ("load", "conf"):
            link = root / "mods-enabled" / f"{module}.{kind}"
            if (root / "mods-available" / link.name).exists() and not link.exists():
                link.symlink_to(f"../mods-available/{link.name}")
    (root / "sites-enabled" / "000-default.conf").unlink(missing_ok=True)
    for kind, name, enabled in (("conf", "heartmonitor.conf", "conf-enabled"),
                                ("sites", "hb-front.conf", "sites-enabled")):
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
    assert [(str(m.address), m.name, m.lbset) for m in config.members] == [
        ("10.0.0.11:8080", "web1", 0), ("10.0.0.12:8080", "web2", 0),
        ("10.0.0.13:8080", "web3", 0), ("10.0.0.14:8080", "spare", 1)]
    assert (config.proxy.retry, config.http.retries, config.http.response_timeout) == (60, 2, 30)
    assert config.proxy.user == env["APACHE_RUN_USER"]
    found = "\n".join(notes(text))
    assert "ProxyPass /balancer-manager !" in found and "SetHandler balancer-manager" in found
    assert "${" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))


# --- the command


def test_command_prints_toml_that_loads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-apache", str(DATA / "front-docs.conf")]) == 0
    out, err = capsys.readouterr()
    assert config_module.loads(out).members and "4 member(s)" in err


def test_command_server_root_option(capsys: pytest.CaptureFixture[str]) -> None:
    root = DATA / "front-split"
    assert main(["import-apache", "-d", str(root), str(root / "main.conf")]) == 0
    assert len(config_module.loads(capsys.readouterr().out).members) == 3


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
