"""Suite-wide rule: under CI (CI=true) a test whose real server or tool is missing fails
instead of skipping, so a CI machine without apache2, nginx, haproxy, tomcat10, curl or the
namespace lab cannot pass by running less. Skips for other reasons (no IPv6, no splice, a test
that only means something as root) stay skips."""

from __future__ import annotations

import os
import re
from collections.abc import Generator

import pytest

# What the suite's skip reasons say when a real program, its modules or the lab are missing.
MISSING = re.compile(r"not installed|unavailable|no /etc/apache2|is missing|apt-get install")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) \
        -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if MISSING.search(reason):
            report.outcome = "failed"
            report.longrepr = f"under CI a missing real program fails the test: {reason}"
    return report
