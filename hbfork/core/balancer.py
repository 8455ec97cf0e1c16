"""Ready-weighted random selection over the table's weight words. Pure: no clock, no I/O.

The table publishes one 64-bit word per slot: the member's weight (its ready, 0 when it must not
be picked) in the low 32 bits, its lbset in the next 16, and the USABLE bit (it may still serve
its sticky sessions: drained or ready 0 members are usable, stale, in-error and disabled ones
are not). A worker rebuilds a Picker only when the table's generation moved (one per pool, over
that pool's members and tiers); a pick is then one random number and one bisect:
P(member) = weight / sum of weights, over the lowest tier that has any weight.
(Apache draws from [0, total] inclusive, giving the last member an extra outcome; this does not.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Sequence

WEIGHT_MASK = 0xFFFFFFFF
USABLE = 1 << 48   # the member may serve requests: fresh, not in error, not disabled
DRAINED = 1 << 49  # ... but no new ones: only its sticky sessions
EJECTED = 1 << 50  # out for failing answers; the weight is its reported one, used only when
                   # nothing else of its pool is left (the panic rule)


def pack_word(weight: int, lbset: int, usable: bool = False, drained: bool = False,
              ejected: bool = False) -> int:
    return (USABLE if usable else 0) | (DRAINED if drained else 0) | \
        (EJECTED if ejected else 0) | (lbset & 0xFFFF) << 32 | (weight & WEIGHT_MASK)


def unpack_word(word: int) -> tuple[int, int]:
    """(weight, lbset)"""
    return word & WEIGHT_MASK, (word >> 32) & 0xFFFF


class Picker:
    """Cumulative weights of the eligible members of the active lbset."""

    __slots__ = ("cumulative", "everyone", "generation", "lbset", "slots", "total", "weights")

    def __init__(self) -> None:
        self.generation = -1
        self.slots: list[int] = []
        self.weights: list[int] = []
        self.cumulative: list[int] = []
        self.total = 0
        self.lbset = 0
        self.everyone: list[tuple[int, int, int]] = []  # (lbset, slot, weight), every set

    def rebuild(self, words: Sequence[int], generation: int) -> None:
        """From the table's weight words, tiered by the lbset they carry."""
        self.load([(word >> 32 & 0xFFFF, slot, word & WEIGHT_MASK)
                   for slot, word in enumerate(words) if word & WEIGHT_MASK], generation)

    def load(self, entries: list[tuple[int, int, int]], generation: int) -> None:
        """From (tier, slot, weight) entries (weight > 0), e.g. one pool's members."""
        everyone = sorted(entries)
        best_set = everyone[0][0] if everyone else 0
        slots, weights, cumulative = [], [], []
        total = 0
        for lbset, slot, weight in everyone:
            if lbset != best_set:
                break
            total += weight
            slots.append(slot)
            weights.append(weight)
            cumulative.append(total)
        self.slots, self.weights, self.cumulative = slots, weights, cumulative
        self.total, self.lbset, self.generation = total, best_set, generation
        self.everyone = everyone

    def pick(self, r: float) -> int | None:
        """The slot for a uniform `r` in [0, 1), or None when no member is eligible."""
        if not self.total:
            return None
        return self.slots[bisect_right(self.cumulative, r * self.total)]

    def pick_excluding(self, r: float, excluded: Collection[int]) -> int | None:
        """Like pick, over the members not in `excluded` (used for retries; O(members)).

        When every member of the lowest lbset is excluded, the next set with one is used."""
        if not excluded:
            return self.pick(r)
        pool = [(lbset, slot, weight) for lbset, slot, weight in self.everyone
                if slot not in excluded]
        if not pool:
            return None
        best_set = pool[0][0]
        best = [(slot, weight) for lbset, slot, weight in pool if lbset == best_set]
        target = r * sum(weight for _, weight in best)
        running = 0
        for slot, weight in best:
            running += weight
            if target < running:
                return slot
        return best[-1][0]  # reached only through float rounding at the very top
