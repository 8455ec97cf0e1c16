"""Helpers for the import-apache tests: translate a config, and ask the translation what hbfork
would do with a request (through the route table hbfork itself compiles)."""

from __future__ import annotations

import re
from pathlib import Path

from hbfork.apache import render as ai
from hbfork.apache.include import DiskSource, Walker
from hbfork.apache.translate import Translation, translate
from hbfork.core import config as config_module
from hbfork.core.pool_settings import RouteSettings
from hbfork.core.routes import compile_routes
from hbfork.core.uri import normalize_host, parse_target
from tests.unit.apache.test_include import walk

DATA = Path(__file__).resolve().parents[2] / "data" / "apache"
NOTE = re.compile(r"^# not translated: .+ \(.+:\d+\) — .+$")


def translate_text(text: str, **kwargs) -> tuple[str, Translation]:
    """The TOML for an httpd.conf given as text (Includes read from a dict: `walk`)."""
    walked = walk({"/etc/httpd/httpd.conf": text}, **kwargs)
    translation = translate(walked)
    return ai.render(translation, "httpd.conf", walked), translation


def fake_resolve(host: str) -> list[str]:
    """Host names in members resolve to one documentation address each (198.18.0.0/15,
    numbered by the name), as a resolver would when `hbfork check` reads the file."""
    number = sum(host.encode()) % 250 + 1
    return [f"198.18.0.{number}"]


def load(text: str) -> tuple[str, config_module.Config]:
    """Translate an httpd.conf and load the TOML as `hbfork check` does."""
    rendered, _ = translate_text(text)
    return rendered, config_module.loads(rendered, resolve=fake_resolve)


def translate_file(path: Path, server_root: Path | None = None,
                   env: dict[str, str] | None = None) -> tuple[str, config_module.Config]:
    root = str(server_root or path.parent)
    walked = Walker(DiskSource(), root, env or {}).walk(str(path))
    text = ai.render(translate(walked), str(path), walked)
    return text, config_module.loads(text, str(path), resolve=fake_resolve)


def comments(text: str) -> str:
    """The comment lines joined into one line, so wrapped sentences can be matched."""
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def notes(text: str) -> list[str]:
    found = [line for line in text.splitlines() if line.startswith("# not translated:")]
    assert all(NOTE.match(line) for line in found), found
    return found


def route_of(config: config_module.Config, host: str, target: str) -> RouteSettings | None:
    """The route hbfork picks for a request (None: no route, a 404)."""
    parsed = parse_target(target.encode())
    found = compile_routes(config.routes).lookup(normalize_host(host), parsed.match)
    return found[0].settings if found else None


def forward(config: config_module.Config, host: str, target: str) -> tuple[str | int, str]:
    """(pool, path the member is sent) for a request; (status, "") when hbfork answers it."""
    parsed = parse_target(target.encode())
    found = compile_routes(config.routes).lookup(normalize_host(host), parsed.match)
    if found is None:
        return 404, ""
    route, match = found
    if not route.passes:
        return route.settings.status, ""
    return route.pool, route.member_path(parsed.path, match) + parsed.query
