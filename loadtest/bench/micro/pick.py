"""Micro-benchmark of member selection: Picker.pick, the worker's full choose() for each
weighting and pick (corrected, reported, p2c), and rebuilds.

A benchmark, not a test: it prints numbers and asserts nothing. `random()` alone is timed in the
same run as a reference, so ratios can be compared across machines.

    ./scripts/bench-pick [--number N] [--repeat R] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import timeit
from ipaddress import IPv4Address

from hbfork.core.balancer import Picker, pack_word
from hbfork.core.members import ELIGIBLE, Member
from hbfork.proxy.upstreams import Upstreams
from hbfork.table.layout import STATE_READY, WK_STATE
from hbfork.table.table import Table

SIZES = (10, 100, 1000)
TARGET_US = 2.0  # per pick at 1,000 members


def best_us(func, number: int, repeat: int) -> float:
    """Best of `repeat` runs of `number` calls, in µs per call."""
    return min(timeit.Timer(func).repeat(repeat=repeat, number=number)) / number * 1e6


def random_words(rng: random.Random, n: int) -> list[int]:
    return [pack_word(rng.randrange(1, 200), 0) for _ in range(n)]


MODES = (("corrected", "weighted"), ("reported", "weighted"), ("corrected", "p2c"))


def bench_choose(rng: random.Random, n: int, number: int, repeat: int) -> dict[str, float]:
    """Upstreams.choose() over a real shared-memory table with 4 live workers' records:
    generation check, pick (in-flight counts summed over the records), uid check, cached
    target. Returns µs per choose for each (weighting, pick), and with one excluded slot."""
    table = Table.create(n, 4, master_pid=910_000 + os.getpid() % 1000)
    records = [table.worker_words(i) for i in range(4)]
    try:
        for record in records:
            record[WK_STATE] = STATE_READY
        for slot in range(n):
            ready = rng.randrange(1, 200)
            table.write_member(slot, Member(
                slot=slot, uid=slot + 1, ip=IPv4Address(0x0A000000 + slot), port=8080,
                static=True, ready=ready, busy=ready // 2, first_seen=1, last_seen=1,
                weight=ready, reason=ELIGIBLE, usable=True, capacity=ready + ready // 2))
        table.bump_generation()
        upstreams = Upstreams(table, records[0], rng=random.Random(rng.random()))
        out = {}
        choose, finished = upstreams.choose, upstreams.finished

        def request() -> None:
            # A pick reserves its place (in flight from then on), so every pick is paired
            # with the end of its request, as in the worker; without it every member fills
            # up to its capacity and the benchmark measures the "all full" path.
            target = choose()
            finished(target, 200)  # type: ignore[arg-type]

        for weighting, pick in MODES:
            upstreams.default.weighting, upstreams.default.pick = weighting, pick
            for _ in range(20 * n):  # warm the target cache, as a running worker has
                request()
            out[f"{weighting}/{pick}"] = best_us(request, number, repeat)
        upstreams.default.weighting, upstreams.default.pick = "corrected", "weighted"
        excluded = {0}

        def retry() -> None:
            finished(choose(excluded), 200)  # type: ignore[arg-type]

        out["excluded"] = best_us(retry, max(number // 50, 200), repeat)
        upstreams.targets.clear()
        return out
    finally:
        for record in records:
            record.release()
        table.unlink()
        table.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-pick",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best one counts")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    draw = random.Random(args.seed + 1).random

    reference = best_us(draw, args.number, args.repeat)
    print(f"bench-pick: Python {sys.version.split()[0]}, best of {args.repeat} x "
          f"{args.number:,} calls")
    print(f"reference random():  {reference:7.3f} µs")
    print()
    print(f"{'members':>8}  {'pick()':>9}  {'corrected':>10}  {'reported':>10}  {'p2c':>10}  "
          f"{'excluded':>10}  {'rebuild':>9}")
    results = {}
    for n in SIZES:
        picker = Picker()
        words = random_words(rng, n)
        picker.rebuild(words, 1)
        pick = best_us(lambda p=picker: p.pick(draw()), args.number, args.repeat)
        rebuild_number = max(10, 200_000 // n)
        rebuild = best_us(lambda p=picker, w=words: p.rebuild(w, 2), rebuild_number, args.repeat)
        choose = bench_choose(rng, n, args.number // 4, args.repeat)
        results[n] = choose
        print(f"{n:>8}  {pick:7.3f}µs  {choose['corrected/weighted']:8.3f}µs  "
              f"{choose['reported/weighted']:8.3f}µs  {choose['corrected/p2c']:8.3f}µs  "
              f"{choose['excluded']:8.2f}µs  {rebuild:7.1f}µs")
    print()
    for mode in ("corrected/weighted", "reported/weighted", "corrected/p2c"):
        value = results[1000][mode]
        verdict = "met" if value <= TARGET_US else "NOT met"
        print(f"target: choose() {mode} <= {TARGET_US:g} µs at 1,000 members (measured with "
              f"the finished() that ends its request): {verdict} "
              f"({value:.3f} µs)")
    print(f"(reference random(): {reference:.3f} µs) pick() = random() + bisect on a rebuilt "
          "Picker; choose() = the worker's path (generation check, pick with in-flight counts "
          "and the reservation, then finished() at the request's end, "
          "over 4 workers' records, uid check, cached target); excluded = a retry that avoids "
          "one member (every member looked at once); rebuild = after a generation change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
