"""scripts/bench-gray's pure pieces: the fronts' configs (hbfork's read back by hbfork's own
loader, HAProxy's checked by haproxy -c when it is installed), HAProxy's `show stat` reading,
and the report's figures and targets."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest

from hbfork.core.config import loads
from loadtest.bench.programs import gray as conf
from loadtest.bench.report import gray as report
from loadtest.bench.scenarios.gray import stat_state

MEMBERS = ["127.0.0.2:18001", "127.0.0.3:18001", "127.0.0.4:18001"]


def test_hbfork_config_has_outlier_defaults_and_retries_on_the_statuses(tmp_path: Path) -> None:
    config = loads(conf.hbfork_conf(tmp_path, 18100, 18101, "127.0.0.1:18102", MEMBERS))
    pool = config.pool("default")
    assert [str(m.address) for m in pool.members] == MEMBERS
    assert set(pool.retry_on) == {"reset", "empty-response", "malformed-response", "timeout",
                                  500, 502, 503, 504}
    assert config.http.response_timeout == 2 and config.http.retries == 2
    assert config.outlier.consecutive_5xx == 5 and config.outlier.failure_rate == 0.25
    assert config.outlier.eject_time == 30 and config.outlier.max_ejected_share == 0.5


def test_haproxy_observes_every_server_and_retries_on_5xx(tmp_path: Path) -> None:
    text = conf.haproxy_conf(tmp_path, 18103, MEMBERS)
    servers = [line for line in text.splitlines() if line.strip().startswith("server ")]
    assert len(servers) == 3
    assert all("check" in s and "observe layer7" in s and "error-limit 5" in s
               and "on-error mark-down" in s for s in servers)
    assert "retry-on conn-failure empty-response junk-response response-timeout " \
           "500 502 503 504" in text
    assert "option httpchk GET /" in text and "timeout server 2s" in text
    assert "retries 2" in text and "option redispatch 1" in text


@pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
                    reason="haproxy is not installed")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(conf.haproxy_conf(tmp_path, 18103, MEMBERS))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    done = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nginx_retries_on_5xx_and_counts_fails_on_every_server(tmp_path: Path) -> None:
    text = conf.nginx_conf(tmp_path, 18104, MEMBERS)
    for member in MEMBERS:
        assert f"server {member} max_fails=5 fail_timeout=30s;" in text
    assert "proxy_next_upstream error timeout invalid_header http_500 http_502 http_503 " \
           "http_504;" in text
    assert "proxy_next_upstream_tries 3;" in text and "proxy_read_timeout 2s;" in text
    assert "zone members" in text   # one fail count for all of nginx's workers


def test_the_third_member_gets_its_scenario_and_records_arrivals(tmp_path: Path) -> None:
    argv = conf.member_argv("py", "127.0.0.4:1", "127.0.0.1:2", "m3", 8,
                            conf.SCENARIOS["5xx-30"].args, tmp_path / "a.json")
    assert argv[argv.index("--fault-rate") + 1] == "0.3"
    assert argv[argv.index("--fault-status") + 1] == "502"
    assert "--fault-on-signal" in argv and argv[-2:] == ["--arrivals", str(tmp_path / "a.json")]
    assert "--arrivals" not in conf.member_argv("py", "a:1", "b:2", "m1", 8)
    assert conf.SCENARIOS["graceful-stop"].trigger == "sigterm"
    assert conf.SCENARIOS["slow"].trigger == "" and "200" in conf.SCENARIOS["slow"].args


STAT = """# pxname,svname,qcur,status,weight
front,FRONTEND,0,OPEN,
members,m1,0,UP,1
members,m2,0,UP 1/2,1
members,m3,0,DOWN,1
members,BACKEND,0,UP,2
"""


def test_haproxy_stat_says_in_or_out() -> None:
    assert stat_state(STAT, "m1") == ""
    assert stat_state(STAT, "m2") == ""        # failing checks, not yet at fall: still in
    assert stat_state(STAT, "m3") == "DOWN"
    assert stat_state(STAT, "m9") == ""


def run(front: str, scenario: str, failures: int, requests: int, goodput: float,
        round_: int = 0, **extra: object) -> dict[str, object]:
    return {"front": front, "scenario": scenario, "failures": failures, "requests": requests,
            "goodput": goodput, "round": round_, "p99": 10.0, "out_after": None,
            "out_state": "", "third_after_fault": 0, "third_after_out": None, **extra}


@pytest.mark.parametrize(("mine", "requests", "ref", "ok"), [
    (0, 1000, 0, True), (3, 1000, 3, True), (4, 1000, 3, True),   # 4 <= 0.5 % of 1000
    (6, 1000, 3, False), (6, 100_000, 0, True), (1, 10, 0, False)])
def test_failures_target(mine: int, requests: int, ref: int, ok: bool) -> None:
    assert report.failures_ok(mine, requests, ref) is ok


def test_goodput_ratio_is_per_round_then_median() -> None:
    runs = [run("hbfork", "s", 0, 100, 80.0, 0), run("haproxy", "s", 0, 100, 100.0, 0),
            run("hbfork", "s", 0, 100, 300.0, 1), run("haproxy", "s", 0, 100, 100.0, 1),
            run("hbfork", "s", 0, 100, 90.0, 2), run("haproxy", "s", 0, 100, 100.0, 2)]
    assert report.ratio(runs, "s", "hbfork", "goodput") == pytest.approx(0.9)
    assert math.isnan(report.ratio(runs, "other", "hbfork", "goodput"))


def test_after_out_share_needs_a_moment_taken_out() -> None:
    assert report.after_out_share(run("hbfork", "s", 0, 1000, 1.0)) is None
    taken = run("hbfork", "s", 0, 1000, 1.0, out_after=0.2, third_after_out=20)
    assert report.after_out_share(taken) == pytest.approx(0.02)


def results(runs: list[dict[str, object]], detection: list[dict[str, object]]) -> dict:
    return {"scenarios": {"5xx-all": "x"}, "runs": runs, "detection": detection,
            "duration": 8}


def test_targets_say_not_met_with_the_figures() -> None:
    runs = [run("hbfork", "5xx-all", 50, 1000, 70.0, out_after=0.1, out_state="ejected",
                third_after_out=30),
            run("haproxy", "5xx-all", 10, 1000, 100.0)]
    slow = run("hbfork", "5xx-all", 0, 8000, 1.0, rate=1000.0, ejected_after=1.4,
               out_after=1.4, third_after_out=0)
    lines = "\n".join(report.targets(results(runs, [slow])))
    assert "hbfork 50 of 1000, HAProxy 10 | **not met**" in lines
    assert "0.70x | **not met**" in lines
    assert "3.00 % (worst round) | **not met**" in lines
    assert "at 1,000 requests/s | 1.40 s | **not met**" in lines
    good = [run("hbfork", "5xx-all", 0, 1000, 95.0, out_after=0.1, third_after_out=0),
            run("haproxy", "5xx-all", 2, 1000, 100.0)]
    fast = {**slow, "ejected_after": 0.3}
    lines = report.targets(results(good, [fast]))
    assert all(line.endswith("| met |") for line in lines[2:]), lines


def test_the_table_has_a_row_per_front_and_the_ratio_to_haproxy() -> None:
    runs = [run("hbfork", "5xx-all", 1, 1000, 90.0, out_after=0.05, out_state="ejected",
                third_after_out=0),
            run("haproxy", "5xx-all", 0, 1000, 100.0), run("nginx", "5xx-all", 0, 2000, 200.0)]
    rows = report.table(results(runs, []))[2:]
    assert len(rows) == 3
    assert rows[0].startswith("| 5xx-all | hbfork | 1,000 | 1 (0.10 %) | 90 | 0.90 |")
    assert "0.05 s (ejected)" in rows[0] and "0 (0.00 %)" in rows[0]
    assert "| never |" in rows[1] and "| n/a |" in rows[2]
    assert "| 2.00 |" in rows[2]


def test_a_scenario_without_a_fault_moment_shows_no_take_out_figures() -> None:
    runs = [run("hbfork", "slow", 0, 1000, 90.0, out_after=0.1, out_state="ready 0",
                third_after_out=40), run("haproxy", "slow", 0, 1000, 100.0)]
    rows = report.table({"scenarios": {"slow": "x"}, "runs": runs,
                         "no_fault_moment": ["slow"]})[2:]
    assert all(row.endswith("| - | 0 (the whole run) | - |") for row in rows), rows


def test_what_a_slow_member_held_is_its_requests_times_its_delay() -> None:
    runs = [run("hbfork", "slow", 0, 1000, 90.0, third_after_fault=320),
            run("haproxy", "slow", 0, 1000, 100.0, third_after_fault=240)]
    lines = report.held({"runs": runs, "no_fault_moment": ["slow", "healthy"], "duration": 8})
    assert lines == ["* `slow`: requests the 200-ms member held on average (its requests x "
                     "its service time / the run's length): hbfork 8.0; HAProxy 6.0, of the "
                     "16 clients."]


def test_detection_targets_are_hbforks_and_haproxy_is_shown_beside() -> None:
    mine = run("hbfork", "hang", 0, 8000, 1.0, rate=1000.0, ejected_after=2.05,
               out_after=2.05, out_state="ejected", third_after_out=4)
    ref = run("haproxy", "hang", 0, 8000, 1.0, rate=1000.0, out_after=1.5, out_state="DOWN",
              third_after_out=7)
    data = {"scenarios": {"hang": "x"}, "runs": [], "detection": [mine, ref], "duration": 8,
            "fault_at": 1.0}
    lines = report.targets(data)
    assert sum("within 1 s" in line for line in lines) == 1
    assert any("2.05 s | **not met**" in line for line in lines)
    assert any("0.05 % | met" in line for line in lines)
    rows = report.detection(data)
    assert any(row.startswith("| hang | HAProxy | 1.50 s |") for row in rows)
