"""`hbfork health`'s own parts (hbfork.cli.health): arguments, and finding the control socket
with nothing but the config's [proxy] keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from hbfork.cli.health import DEFAULT_TIMEOUT, control_socket_of, parse


def test_arguments() -> None:
    assert parse(["-c", "a.toml", "-q"]) == {"config": "a.toml", "socket": None, "quiet": True,
                                            "timeout": DEFAULT_TIMEOUT, "from_table": False}
    options = parse(["--socket=/run/x.ctl", "--timeout", "0.5", "--from-table"])
    assert (options["socket"], options["timeout"], options["from_table"]) == ("/run/x.ctl", 0.5,
                                                                              True)
    for bad in ([], ["-q"], ["-c"], ["--timeout", "x", "-c", "a"], ["-c", "a", "--what"]):
        with pytest.raises(ValueError):
            parse(bad)


def test_the_control_socket_is_found_as_the_master_finds_it(tmp_path: Path) -> None:
    config = tmp_path / "hbfork.toml"
    config.write_text('[proxy]\npidfile = "run/hbfork.pid"\nworkers = 2\n[log]\nlevel = "x"\n')
    assert control_socket_of(str(config)) == f"{tmp_path}/run/hbfork.pid.ctl"
    config.write_text('[proxy]\npidfile = "p"\ncontrol_socket = "/run/h.ctl"\n')
    assert control_socket_of(str(config)) == "/run/h.ctl"
    config.write_text("[status]\n")
    assert control_socket_of(str(config)) is None  # no pid file: no control socket
    for bad in ("[proxy\n", "proxy = 3\n", "[proxy]\npidfile = 3\n"):
        config.write_text(bad)
        with pytest.raises(ValueError, match=r"hbfork\.toml"):
            control_socket_of(str(config))
    with pytest.raises(ValueError, match="nowhere"):
        control_socket_of(str(tmp_path / "nowhere.toml"))
