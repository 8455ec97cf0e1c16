"""CPU accounting from /proc/PID/stat lines (pure parsing and sums; one read of /proc)."""

from __future__ import annotations

import pytest

from loadtest.bench.proc_stats import CpuTicks, cpu_ticks, parse_stat


def stat_line(comm: str, utime: int, stime: int, cutime: int, cstime: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime ...
    return (f"4242 ({comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} "
            f"{cstime} 20 0 1 0 12345 1000000 200 18446744073709551615\n")


def test_parse_takes_utime_stime_cutime_cstime() -> None:
    assert parse_stat(stat_line("nginx", 11, 22, 33, 44)) == CpuTicks(11, 22, 33, 44)


@pytest.mark.parametrize("comm", ["hbfork: worker 1 gen 2", "a) b (c", ") 1 2 3 4 5"])
def test_a_command_name_with_spaces_and_parentheses_does_not_shift_fields(comm: str) -> None:
    assert parse_stat(stat_line(comm, 5, 6, 7, 8)) == CpuTicks(5, 6, 7, 8)


def test_seconds_and_split_count_reaped_children() -> None:
    ticks = CpuTicks(user=100, system=50, children_user=30, children_system=20)
    assert ticks.seconds(tck=100) == pytest.approx(2.0)
    assert ticks.split(tck=100) == pytest.approx((1.3, 0.7))


def test_sum_of_processes() -> None:
    total = CpuTicks(1, 2, 3, 4) + CpuTicks(10, 20, 30, 40)
    assert total == CpuTicks(11, 22, 33, 44)
    assert total.seconds(tck=1) == 110


def test_a_pid_that_is_gone_counts_zero() -> None:
    # Above Linux's largest pid_max (2**22): never a live process.
    assert cpu_ticks([2**22 + 7]) == CpuTicks()
