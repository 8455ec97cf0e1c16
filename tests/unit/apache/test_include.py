"""hbfork.apache_include: Include/IncludeOptional, ServerRoot, and conditions in file order."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from hbfork.apache import include as inc


class DictSource:
    """Files from a dict: the walker's file access, without a disk."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def expand(self, pattern: str) -> list[str]:
        if pattern in self.files:
            return [pattern]
        prefix = pattern.rstrip("/") + "/"
        below = sorted(p for p in self.files if p.startswith(prefix))
        return below or sorted(p for p in self.files if fnmatch.fnmatch(p, pattern))

    def read(self, path: str) -> str:
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.files[path]


def walk(files: dict[str, str], main_file: str = "/etc/httpd/httpd.conf",
         env: dict[str, str] | None = None, defines: tuple[str, ...] = ()) -> inc.Walked:
    return inc.Walker(DictSource(files), "/etc/httpd", env or {}, defines).walk(main_file)


def test_includes_are_relative_to_server_root_and_sorted() -> None:
    walked = walk({
        "/etc/httpd/httpd.conf": "Include conf.d/*.conf\nIncludeOptional none/*.conf\n"
                                 "Include extra/\nListen 1\n",
        "/etc/httpd/conf.d/b.conf": "Listen 3\n",
        "/etc/httpd/conf.d/a.conf": "Listen 2\n",
        "/etc/httpd/extra/sub/z.conf": "Listen 4\n",
    })
    assert [d.args[0] for d in walked.directives] == ["2", "3", "4", "1"]
    assert walked.files[0] == "/etc/httpd/httpd.conf" and len(walked.files) == 4
    assert walked.notes == []  # IncludeOptional matching nothing is fine


def test_server_root_directive_moves_later_includes() -> None:
    walked = walk({"/etc/httpd/httpd.conf": 'ServerRoot "/opt/web"\nInclude site.conf\n',
                   "/opt/web/site.conf": "Listen 9\n"})
    assert walked.server_root == "/opt/web"
    assert walked.directives[-1].args == ("9",)


def test_runtime_dir_defaults_under_server_root() -> None:
    assert walk({"/etc/httpd/httpd.conf": "Listen 80\n"}).runtime_dir == "/etc/httpd/logs"
    walked = walk({"/etc/httpd/httpd.conf": "DefaultRuntimeDir run\n"})
    assert walked.runtime_dir == "/etc/httpd/run"


def test_include_problems_become_notes() -> None:
    walked = walk({"/etc/httpd/httpd.conf": "Include missing.conf\nInclude loop.conf\n",
                   "/etc/httpd/loop.conf": "Include loop.conf\n"})
    reasons = [note.reason for note in walked.notes]
    assert "nothing matches (Apache would refuse to start)" in reasons[0]
    assert "includes itself" in reasons[1]


def test_includes_inside_sections_stay_inside() -> None:
    walked = walk({"/etc/httpd/httpd.conf": "<Proxy balancer://x>\nInclude m.conf\n</Proxy>\n",
                   "/etc/httpd/m.conf": "BalancerMember http://10.0.0.1\n"})
    (proxy,) = walked.directives
    assert [d.key for d in proxy.children] == ["balancermember"]
    assert proxy.children[0].file == "/etc/httpd/m.conf"


def test_variables_from_define_then_environment() -> None:
    walked = walk({"/etc/httpd/httpd.conf": "Define PORT 81\nListen ${PORT}\nListen ${ENVPORT}\n"
                   "Listen ${NOWHERE}\nUndefine PORT\nListen ${PORT}\n"},
                  env={"ENVPORT": "82", "PORT": "99"})
    listens = [d.args[0] for d in walked.directives if d.key == "listen"]
    assert listens == ["81", "82", "${NOWHERE}", "99"]


def test_ifmodule_follows_loadmodule_in_order() -> None:
    walked = walk({"/etc/httpd/httpd.conf": (
        "<IfModule proxy_module>\nA 1\n</IfModule>\n"        # no LoadModule yet: assumed
        "LoadModule proxy_module modules/mod_proxy.so\n"
        "<IfModule mod_proxy.c>\nB 1\n</IfModule>\n"
        "<IfModule !proxy_module>\nC 1\n</IfModule>\n"
        "<IfModule ssl_module>\nD 1\n</IfModule>\n"
        "<IfModule mod_watchdog.c>\nE 1\n</IfModule>\n"      # compiled in
        "<IfModule !ssl_module>\n<IfModule proxy_module>\nF 1\n</IfModule>\n</IfModule>\n")})
    assert [d.name for d in walked.directives if d.key != "loadmodule"] == ["A", "B", "E", "F"]
    assert walked.skipped == 2


def test_ifdefine_and_ifversion() -> None:
    walked = walk({"/etc/httpd/httpd.conf": (
        "<IfDefine SSL>\nA 1\n</IfDefine>\n<IfDefine !SSL>\nB 1\n</IfDefine>\n"
        "Define LOCAL\n<IfDefine LOCAL>\nC 1\n</IfDefine>\n"
        "<IfVersion >= 2.4>\nD 1\n</IfVersion>\n<IfVersion < 2.4>\nE 1\n</IfVersion>\n"
        "<IfVersion ~ ^2>\nF 1\n</IfVersion>\n<IfVersion != 2.2>\nG 1\n</IfVersion>\n"
        "<IfVersion !>= 2.4>\nH 1\n</IfVersion>\n")}, defines=("SSL",))
    assert [d.name for d in walked.directives if d.key != "define"] == ["A", "C", "D", "F", "G"]


def test_disk_source_sorts_globs_and_walks_directories(tmp_path: Path) -> None:
    for name in ("conf.d/b.conf", "conf.d/a.conf", "conf.d/sub/c.conf", "conf.d/x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    source = inc.DiskSource()
    found = [Path(p).relative_to(tmp_path).as_posix()
             for p in source.expand(str(tmp_path / "conf.d"))]
    assert found == ["conf.d/a.conf", "conf.d/b.conf", "conf.d/sub/c.conf", "conf.d/x.txt"]
    assert [Path(p).name for p in source.expand(str(tmp_path / "conf.d/*.conf"))] == [
        "a.conf", "b.conf"]
    assert source.expand(str(tmp_path / "nowhere/*.conf")) == []
    assert source.expand(str(tmp_path / "missing.conf")) == []
