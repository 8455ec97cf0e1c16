"""hbfork.system.configfile: reading the config file from disk."""

from __future__ import annotations

import pytest

from hbfork.core.errors import ConfigError
from hbfork.system.configfile import load

MEMBER = '[[member]]\naddress = "127.0.0.2:8080"\n'


def test_relative_paths_resolve_against_the_file(tmp_path) -> None:
    path = tmp_path / "conf" / "front.toml"
    path.parent.mkdir()
    path.write_text(MEMBER + '[proxy]\npidfile = "run/hb.pid"\n')
    cfg = load(path)
    assert cfg.path == str(path)
    assert cfg.pidfile == str(tmp_path / "conf" / "run" / "hb.pid")
    assert cfg.control_socket == cfg.pidfile + ".ctl"
    assert cfg.resolve(None) is None
    assert cfg.resolve("/abs/x") == "/abs/x"


def test_missing_file_names_the_file(tmp_path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert info.value.path == str(missing)
    assert "no such file" in str(info.value)
    assert str(missing) in str(info.value)
