"""Fixtures for the session tests."""

from __future__ import annotations

import pytest

from tests.unit.proxy.fakes import FakeContext


@pytest.fixture(params=["fast path", "general path"])
def both_http_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with [http] fast_path on and off (a module uses it for all its tests)."""
    fast = request.param == "fast path"
    monkeypatch.setattr(FakeContext, "defaults", {"fast_path": fast})
    return fast
