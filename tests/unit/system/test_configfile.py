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


def test_the_response_spool_directory_must_be_a_writable_directory(tmp_path) -> None:
    path = tmp_path / "front.toml"
    spool = tmp_path / "spool"
    spool.mkdir()
    path.write_text(MEMBER + f'[http]\nresponse_spool_dir = "{spool}"\n')
    assert load(path).http.response_spool_dir == str(spool)
    for where, problem in ((tmp_path / "none", "is not a directory"),
                           (path, "is not a directory")):
        for on in ("", "response_spool_max = 1073741824\n"):  # spooling on: the default
            path.write_text(MEMBER + f'[http]\nresponse_spool_dir = "{where}"\n' + on)
            with pytest.raises(ConfigError) as info:
                load(path)
            assert info.value.key == "[http] response_spool_dir" and \
                problem in info.value.problem
    # spooling off (0): the directory is not used, so not checked
    path.write_text(MEMBER + f'[http]\nresponse_spool_dir = "{tmp_path / "none"}"\n'
                    'response_spool_max = 0\n')
    assert load(path).http.response_spool_max == 0
