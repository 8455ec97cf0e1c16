"""wrk's output as numbers, and the argv the runner builds (no wrk is run)."""

from __future__ import annotations

import pytest

from loadtest.bench import wrk

OUTPUT = """\
Running 1s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.41ms    1.02ms  20.11ms   91.43%
    Req/Sec    11.79k     1.21k   13.55k    70.00%
  Latency Distribution
     50%  612.00us
     75%    1.55ms
     90%    2.18s
     99%    1.50m
  23400 requests in 1.00s, 18.62MB read
  Socket errors: connect 1, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1170
Requests/sec:  23400.00
Transfer/sec:     18.62MB
"""


def test_percentiles_in_milliseconds_whatever_the_unit() -> None:
    out = wrk.parse(OUTPUT)
    assert out["p50"] == pytest.approx(0.612)
    assert out["p75"] == pytest.approx(1.55)
    assert out["p90"] == pytest.approx(2180.0)
    assert out["p99"] == pytest.approx(90_000.0)


def test_counts_errors_and_goodput() -> None:
    out = wrk.parse(OUTPUT)
    assert out["rps"] == 23400.0
    assert out["requests"] == 23400
    assert out["socket_errors"] == {"connect": 1, "read": 3, "write": 0, "timeout": 2}
    assert out["errors"] == 6
    assert out["non2xx"] == 1170
    assert wrk.error_count(out) == 1176
    # 5 % of the answers were not 2xx: they are not goodput
    assert out["ok_rps"] == pytest.approx(23400 * 0.95)


def test_a_clean_run_has_zero_errors_and_no_socket_breakdown() -> None:
    text = OUTPUT.replace("  Socket errors: connect 1, read 3, write 0, timeout 2\n", "") \
        .replace("  Non-2xx or 3xx responses: 1170\n", "")
    out = wrk.parse(text)
    assert out["errors"] == 0 and out["non2xx"] == 0 and "socket_errors" not in out
    assert out["ok_rps"] == out["rps"]


def test_thread_stats_latency_is_not_taken_for_a_percentile() -> None:
    # Only the "Latency Distribution" lines are percentiles; without --latency there are none.
    text = "\n".join(line for line in OUTPUT.splitlines() if "%  " not in line
                     or "Latency" in line or "Req/Sec" in line)
    out = wrk.parse(text)
    assert not any(key in out for key in ("p50", "p75", "p90", "p99"))


def test_failed_run_output_has_no_rate() -> None:
    out = wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")
    assert "rps" not in out and "requests" not in out and "ok_rps" not in out


@pytest.mark.parametrize(("text", "ms"), [("5us", 0.005), ("2.5ms", 2.5), ("1s", 1000.0),
                                          ("0.5m", 30_000.0)])
def test_to_ms(text: str, ms: float) -> None:
    assert wrk.to_ms(text) == pytest.approx(ms)


def test_to_ms_refuses_what_is_not_a_duration() -> None:
    with pytest.raises(ValueError):
        wrk.to_ms("12h")


def test_command_caps_threads_at_connections_and_puts_script_args_last() -> None:
    argv = wrk.command("http://h/upload", 1, 2.5, threads=2, script=["-s", "post.lua"],
                       script_args=["1048576"])
    assert argv[1:] == ["-t1", "-c1", "-d2.5s", "--latency", "--timeout", "5s", "-s",
                        "post.lua", "http://h/upload", "--", "1048576"]


def test_command_without_timeout_keeps_wrks_default_and_adds_headers() -> None:
    argv = wrk.command("https://h/", 64, 5, headers=("Connection: close",), timeout=None)
    assert "--timeout" not in argv
    assert argv[-3:] == ["-H", "Connection: close", "https://h/"]
