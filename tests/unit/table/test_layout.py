"""hbfork.table.layout: every word of a worker record has one owner (features added side by
side must never count into each other's words)."""

from __future__ import annotations

from hbfork.table import layout


def _ranges() -> dict[str, range]:
    """Each WK_ name and the words it owns (a multi-word field owns its whole run)."""
    runs = {
        "WK_STATUS_CLASS": 5, "WK_TLS": len(layout.TLS_RESULTS),
        "WK_HISTOGRAM": len(layout.LATENCY_BUCKETS) + 1,
        "WK_QUEUE_HISTOGRAM": len(layout.LATENCY_BUCKETS) + 1,
        "WK_PROXY": len(layout.PROXY_RESULTS),
    }
    if hasattr(layout, "SLOW_KINDS"):
        runs["WK_SLOW"] = len(layout.SLOW_KINDS)
    found = {}
    for name in dir(layout):
        value = getattr(layout, name)
        if name.startswith("WK_") and isinstance(value, int) and name != "WK_MEMBERS":
            found[name] = range(value, value + runs.get(name, 1))
    return found


def test_worker_record_words_do_not_overlap() -> None:
    owner: dict[int, str] = {}
    for name, words in sorted(_ranges().items()):
        for word in words:
            assert word < layout.WK_MEMBERS, (name, word)
            assert word not in owner, f"word {word}: {owner.get(word)} and {name}"
            owner[word] = name
