"""RequestIds.new(): the worker's prefix and a counter in hex, spelled without a per-request
format (a table for the low 12 bits): the same IDs the plain format gives, across blocks."""

from __future__ import annotations

from hbfork.core.request_id import RequestIds, RequestIdSettings


def test_new_ids_are_the_prefix_and_the_count_in_hex() -> None:
    ids = RequestIds(RequestIdSettings(enabled=True), b"0a1b2c3d4e5f")
    for count in range(1, 3 * 4096 + 10):
        assert ids.new() == b"0a1b2c3d4e5f-%x" % count


def test_far_counts_keep_the_spelling() -> None:
    ids = RequestIds(RequestIdSettings(enabled=True), b"ff")
    ids.count = 0x123456 * 4096 - 1  # (the block is renewed at the next ID)
    assert [ids.new() for _ in range(4)] == [b"ff-%x" % c for c in range(
        0x123456 * 4096, 0x123456 * 4096 + 4)]


def test_the_id_field_line_starts_with_the_configured_name() -> None:
    ids = RequestIds(RequestIdSettings(enabled=True, header="X-Trace"), b"ab")
    assert ids.line_start == b"X-Trace: "
