"""hbfork.balancer: ready-weighted random over the lowest lbset, from the table's weight words."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from hbfork.core.balancer import WEIGHT_MASK, Picker, pack_word, unpack_word

PICKS = 200_000
TOLERANCE = 0.02  # two percentage points
ALMOST_ONE = math.nextafter(1.0, 0.0)


def picker(words: list[int], generation: int = 1) -> Picker:
    p = Picker()
    p.rebuild(words, generation)
    return p


def assert_shares(counts: Counter, weights: dict[int, int]) -> None:
    """Every slot's share of picks is within TOLERANCE of its share of the weight."""
    n = sum(counts.values())
    total = sum(weights.values())
    assert set(counts) <= {slot for slot, w in weights.items() if w}
    for slot, weight in weights.items():
        assert abs(counts[slot] / n - weight / total) <= TOLERANCE, (slot, counts[slot] / n,
                                                                     weight / total)


# --- words


@pytest.mark.parametrize(("weight", "lbset"), [(0, 0), (1, 0), (5, 3), (WEIGHT_MASK, 0xFFFF),
                                               (2**31 - 1, 1)])
def test_pack_unpack_round_trip(weight: int, lbset: int) -> None:
    assert unpack_word(pack_word(weight, lbset)) == (weight, lbset)


def test_pack_layout() -> None:
    assert pack_word(7, 2) == (2 << 32) | 7
    assert pack_word(0, 5) & WEIGHT_MASK == 0  # weight 0 means "not picked", whatever the set
    # out-of-range parts are masked, never spill into each other
    assert unpack_word(pack_word(2**32 + 5, 0x1_0003)) == (5, 3)
    assert pack_word(WEIGHT_MASK, 0xFFFF) < 2**48


# --- selection


def test_shares_follow_ready() -> None:
    weights = {0: 0, 1: 50, 2: 10, 3: 0, 4: 30, 5: 7, 6: 3}
    p = picker([pack_word(w, 0) for w in weights.values()])
    rng = random.Random(20240501)
    counts = Counter(p.pick(rng.random()) for _ in range(PICKS))
    assert_shares(counts, weights)
    assert counts[0] == counts[3] == 0


def test_shares_with_many_members() -> None:
    rng = random.Random(7)
    weights = {slot: rng.randrange(0, 40) for slot in range(50)}
    p = picker([pack_word(w, 0) for w in weights.values()])
    counts = Counter(p.pick(rng.random()) for _ in range(PICKS))
    assert_shares(counts, weights)
    assert len(counts) == sum(1 for w in weights.values() if w)


def test_pick_is_a_partition_of_zero_to_total() -> None:
    p = picker([pack_word(3, 0), pack_word(1, 0)])
    assert p.total == 4 and p.cumulative == [3, 4]
    assert p.pick(0.0) == 0
    assert p.pick(0.7499) == 0
    assert p.pick(0.75) == 1
    assert p.pick(ALMOST_ONE) == 1


def test_lowest_lbset_with_an_eligible_member_wins() -> None:
    words = [pack_word(10, 1), pack_word(0, 0), pack_word(5, 2), pack_word(5, 1),
             pack_word(0, 0)]
    p = picker(words)
    assert (p.lbset, p.total, p.slots) == (1, 15, [0, 3])
    rng = random.Random(3)
    counts = Counter(p.pick(rng.random()) for _ in range(20_000))
    assert set(counts) == {0, 3}
    assert_shares(counts, {0: 10, 3: 5})


def test_a_lower_lbset_takes_over_when_it_gets_weight() -> None:
    words = [pack_word(10, 1), pack_word(0, 0)]
    p = picker(words, generation=4)
    assert p.pick(0.5) == 0 and p.generation == 4
    words[1] = pack_word(2, 0)
    p.rebuild(words, 5)
    assert p.generation == 5 and p.lbset == 0
    assert {p.pick(r / 100) for r in range(100)} == {1}


def test_pick_excluding_within_the_lowest_set() -> None:
    weights = {0: 10, 1: 20, 2: 30, 3: 40}
    p = picker([pack_word(w, 0) for w in weights.values()])
    rng = random.Random(11)
    counts = Counter(p.pick_excluding(rng.random(), {1}) for _ in range(PICKS // 2))
    assert_shares(counts, {0: 10, 2: 30, 3: 40})
    assert counts[1] == 0


def test_pick_excluding_falls_back_to_the_next_lbset() -> None:
    words = [pack_word(10, 0), pack_word(10, 0), pack_word(3, 1), pack_word(1, 1),
             pack_word(9, 2)]
    p = picker(words)
    rng = random.Random(5)
    counts = Counter(p.pick_excluding(rng.random(), {0, 1}) for _ in range(40_000))
    assert set(counts) == {2, 3}
    assert_shares(counts, {2: 3, 3: 1})
    assert {p.pick_excluding(r / 50, {0, 1, 2, 3}) for r in range(50)} == {4}
    assert p.pick_excluding(0.3, {0, 1, 2, 3, 4}) is None
    assert p.pick_excluding(0.3, {0, 1, 2, 3, 4, 99}) is None


def test_pick_excluding_nothing_is_pick() -> None:
    rng = random.Random(9)
    p = picker([pack_word(rng.randrange(1, 100), rng.randrange(0, 2)) for _ in range(20)])
    for _ in range(1000):
        r = rng.random()
        assert p.pick_excluding(r, set()) == p.pick(r)
        assert p.pick_excluding(r, ()) == p.pick(r)


def test_pick_excluding_unknown_slots_changes_nothing() -> None:
    p = picker([pack_word(1, 0), pack_word(3, 0)])
    for r in (0.0, 0.2, 0.25, 0.9, ALMOST_ONE):
        assert p.pick_excluding(r, {42}) == p.pick(r)


@pytest.mark.parametrize("weight", [1, 3, 7, 1000, 2**31 - 1, WEIGHT_MASK])
@pytest.mark.parametrize("members", [1, 2, 3, 1000])
def test_r_close_to_one_never_overflows(weight: int, members: int) -> None:
    p = picker([pack_word(weight, 0)] * members)
    last = members - 1
    assert p.pick(ALMOST_ONE) == last
    assert p.pick_excluding(ALMOST_ONE, {0} if members > 1 else {99}) == last
    assert p.pick(0.0) == 0


def test_r_close_to_one_with_uneven_weights() -> None:
    rng = random.Random(13)
    for _ in range(200):
        words = [pack_word(rng.randrange(1, WEIGHT_MASK), 0)
                 for _ in range(rng.randrange(1, 300))]
        p = picker(words)
        assert p.pick(ALMOST_ONE) == len(words) - 1
        assert p.pick_excluding(ALMOST_ONE, {0}) in (len(words) - 1, None)


@pytest.mark.parametrize("words", [[], [0], [0, 0, 0], [pack_word(0, 1), pack_word(0, 0)]])
def test_no_eligible_member(words: list[int]) -> None:
    p = picker(words)
    assert p.total == 0 and p.slots == []
    assert p.pick(0.0) is None and p.pick(0.5) is None and p.pick(ALMOST_ONE) is None
    assert p.pick_excluding(0.5, {1}) is None


def test_fresh_picker_is_empty_and_stale() -> None:
    p = Picker()
    assert p.generation == -1  # any table generation (which starts at 1) triggers a rebuild
    assert p.pick(0.5) is None


def test_rebuild_replaces_everything() -> None:
    p = picker([pack_word(5, 0), pack_word(5, 0)])
    p.rebuild([0, 0, pack_word(1, 3)], 2)
    assert (p.slots, p.weights, p.cumulative, p.total, p.lbset) == ([2], [1], [1], 1, 3)
    assert p.everyone == [(3, 2, 1)]
