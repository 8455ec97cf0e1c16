"""The command line as a user meets it: check, run with a bad config, beat, demo."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.integration.harness import HBFORK, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HBFORK, *args], capture_output=True, text=True, timeout=timeout)


def test_check_summarises_the_example_config():
    result = _run("check", "-c", str(ROOT / "conf" / "hbfork.toml"))
    assert result.returncode == 0, result.stderr
    for expected in ("listen:", "mode http", "heartbeat:", "127.0.0.2:9001", "configuration OK"):
        assert expected in result.stdout


def test_bad_config_names_file_and_key_and_binds_nothing(tmp_path):
    port = free_port()
    config = tmp_path / "bad.toml"
    config.write_text(f'[proxy]\nlisten = ["127.0.0.1:{port}"]\nworkers = "lots"\n'
                      '[heartbeat]\ndiscover = true\n')
    for command in ("check", "run"):
        result = _run(command, "-c", str(config))
        assert result.returncode == 2
        assert str(config) in result.stderr and "[proxy] workers" in result.stderr
        assert "Traceback" not in result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # still free: nothing was bound


def test_unreadable_and_invalid_toml_are_clear(tmp_path):
    missing = _run("check", "-c", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[proxy\nlisten = 1\n")
    result = _run("check", "-c", str(broken))
    assert result.returncode == 2 and "not valid TOML" in result.stderr


def test_beat_sends_mod_heartbeat_datagrams(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        port = sink.getsockname()[1]
        result = _run("beat", "--to", f"127.0.0.1:{port}", "--from", "127.0.0.5", "--port",
                      "8080", "--ready", "12", "--busy", "3", "--count", "2",
                      "--interval", "0.05")
        assert result.returncode == 0, result.stderr
        data, source = sink.recvfrom(2000)
    assert data == b"v=1&ready=12&busy=3&port=8080"
    assert source[0] == "127.0.0.5"


def test_beat_probe_failure_sends_ready_zero(tmp_path):
    dead = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        result = _run("beat", "--to", f"127.0.0.1:{sink.getsockname()[1]}", "--probe",
                      f"http://127.0.0.1:{dead}/load", "--count", "1")
        data, _ = sink.recvfrom(2000)
    assert result.returncode == 0
    assert data == b"v=1&ready=0&busy=0"
    assert "sending ready=0" in result.stderr


def test_beat_exec_reports_the_commands_load():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        result = _run("beat", "--to", f"127.0.0.1:{sink.getsockname()[1]}", "--exec",
                      'echo \'{"ready": 4, "busy": 6}\'', "--count", "1", "--port", "81")
        data, _ = sink.recvfrom(2000)
    assert result.returncode == 0, result.stderr
    assert data == b"v=1&ready=4&busy=6&port=81"


def test_demo_splits_traffic_by_ready_counts():
    port = free_port()
    result = _run("demo", "--once", "--port", str(port), "--requests", "600", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.strip().startswith(("alpha", "beta", "gamma"))}
    assert set(rows) == {"alpha", "beta", "gamma"}
    for name, expected in (("alpha", 1 / 6), ("beta", 1 / 3), ("gamma", 1 / 2)):
        got = float(rows[name][3].rstrip("%")) / 100
        assert abs(got - expected) < 0.08, (name, got)
    wait_until(lambda: _port_free(port), 10, message="the demo to release its port")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
