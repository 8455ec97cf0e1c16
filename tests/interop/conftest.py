"""Fixtures for the interop tests: the namespace lab, a scratch directory, and launchers that
stop everything they started (by pid) when their scope ends.

Skips (with the reason shown by `pytest -ra`) when not root, when `ip netns` is not permitted,
or when Debian's apache2 is missing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import labkit
import pytest
from labkit import Launcher, netlab


@pytest.fixture(scope="session")
def lab() -> Iterator[netlab.Lab]:
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(f"network-namespace lab unavailable: {reason}")
    # A prefix unique to this run, so parallel runs (and a hand-made `hbl` lab) never clash.
    with netlab.Lab(prefix=netlab.unique_prefix("hbt"), backends=3) as built:
        yield built


@pytest.fixture(scope="module")
def ha_lab() -> Iterator[netlab.Lab]:
    """A lab with three fronts and a client host, for the high-availability tests."""
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(f"network-namespace lab unavailable: {reason}")
    with netlab.Lab(prefix=netlab.unique_prefix("hbh"), backends=3, fronts=3,
                    clients=1) as built:
        yield built


@pytest.fixture
def ha_launcher(ha_lab: netlab.Lab, workdir: Path, request: pytest.FixtureRequest) \
        -> Iterator[Launcher]:
    """Services in the high-availability lab that live for one test."""
    yield from _launcher(ha_lab, workdir, request)


@pytest.fixture(scope="session")
def apache() -> None:
    """Depend on this to skip when real Apache httpd cannot run here."""
    reason = labkit.apache_unavailable_reason()
    if reason:
        pytest.skip(f"real Apache unavailable: {reason}")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: that sits under a 0700 directory Apache's children cannot enter.
    path = Path(tempfile.mkdtemp(prefix="hbfork-interop-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _launcher(lab: netlab.Lab, workdir: Path, request: pytest.FixtureRequest) \
        -> Iterator[Launcher]:
    launcher = Launcher(lab, workdir)
    yield launcher
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(launcher.output())  # shown with the failure report
    problems = launcher.close()
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def launcher(lab: netlab.Lab, workdir: Path, request: pytest.FixtureRequest) \
        -> Iterator[Launcher]:
    """Services that live for one test."""
    yield from _launcher(lab, workdir, request)


@pytest.fixture(scope="module")
def module_launcher(lab: netlab.Lab, workdir: Path, request: pytest.FixtureRequest) \
        -> Iterator[Launcher]:
    """Services shared by the tests of one module."""
    yield from _launcher(lab, workdir, request)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) \
        -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember each phase's report on the item, so fixtures can tell a failed test.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
