"""A trace of hbfork's front queue, sampled from the shared table while a benchmark runs.

    trace = QueueTrace(master_pid, interval=0.002); trace.start(); ...; samples = trace.stop()
    summary(samples)   # per worker and per member figures of one run (JSON-ready)

Every `interval` seconds (a thread; reads only, through hbfork.table's readers) it records,
for each live worker of the newest generation: its connections, its waiters (PC_QUEUED of the
pool), the age of its first waiter's rank (PC_QUEUE_HEAD: its arrival plus its offset, so
queue_fresh_offset less than its age for a new connection's), how many waiters it has sent
on so far (PC_DEQUEUED), and per member its requests in flight and its finished requests (the
status classes); and per member the capacity the heartbeats give. From two samples in a row one sees
who freed a place (finished += 1) and who took one (started = in-flight delta + finished),
so over a run: whether freed places idled while requests waited anywhere, and which worker's
waiters got them.

One sample: (t, [(index, connections, queued, head_age_ms, dequeued,
                  ((in_flight, finished) per member slot), handed_over) per worker],
              capacities by slot, (ready, at_report) by slot).
The slots are those with a member when the trace started (handed_over: places the worker
left to another worker's older waiter, PC_QUEUE_HANDOFFS; ready: the weight its last heartbeat
gave; at_report: this front's requests in flight to it when that heartbeat came; the last
three absent in traces before them).

A place standing free while requests wait is an "idle span", from the first sample that sees
it to the first that sees it taken. Spans of a sample or two are the time a woken worker takes
to run (or a read between one worker's release and another's reserve); spans longer than
LONG_IDLE are places nobody took: a worker not woken, a stale heartbeat share, or a worker
that did not run at all ("frozen": no worker that had waiters when the span began finished or
sent on a request until it ended; CPU starvation on a loaded machine).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from hbfork.core.balancer import WEIGHT_MASK
from hbfork.table.layout import (
    LOAD_MASK,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    PC_DEQUEUED,
    PC_QUEUE_HANDOFFS,
    PC_QUEUE_HEAD,
    PC_QUEUED,
    STATE_READY,
    WK_CONNECTIONS,
    WK_GENERATION,
    WK_MEMBERS,
    WK_STATE,
    pool_counters_at,
    segment_name,
)
from hbfork.table.table import Table

Sample = tuple[float, list[tuple[Any, ...]], list[int], list[tuple[int, int]]]
LONG_IDLE = 0.010  # seconds: an idle span longer than the 1-5 ms queue polls
SAMPLER_LATE = 5   # a gap of that many usual intervals between samples: the sampler was
                   # not running (a loaded machine); a span open across it is dropped


class QueueTrace:
    def __init__(self, master_pid: int, pool: int = 0, interval: float = 0.002) -> None:
        self.table = Table.attach(segment_name(master_pid))
        self.pool_at = pool_counters_at(self.table.capacity, pool)
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-trace", daemon=True)
        uids = self.table.uid_words()
        self.slots = [slot for slot, uid in enumerate(uids) if uid]
        self.labels = {}
        for slot in self.slots:
            record = self.table.read_member(slot)
            self.labels[slot] = record.label if record is not None else str(slot)

    def start(self) -> QueueTrace:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        self.table.close()
        return self.samples

    def sample(self) -> Sample:
        table, words = self.table, self.table.words
        now = time.monotonic()
        now_us = now * 1e6
        records = [r for r in table.workers.records[:table.worker_capacity]
                   if r.words[WK_STATE] == STATE_READY]
        newest = max((r.words[WK_GENERATION] for r in records), default=0)
        rows = []
        for r in records:
            w = r.words
            if w[WK_GENERATION] != newest:
                continue
            head = w[self.pool_at + PC_QUEUE_HEAD]
            age = (now_us - (head - 1)) / 1000 if head else 0.0
            per_member = []
            for slot in self.slots:
                at = WK_MEMBERS + slot * MEMBER_COUNTERS
                if w[at + MC_UID] != table.uid(slot):
                    per_member.append((0, 0))
                    continue
                per_member.append((w[at + MC_INFLIGHT],
                                   sum(w[at + MC_STATUS_CLASS:at + MC_STATUS_CLASS + 5])))
            rows.append((r.index, w[WK_CONNECTIONS], w[self.pool_at + PC_QUEUED],
                         round(age, 2), w[self.pool_at + PC_DEQUEUED], tuple(per_member),
                         w[self.pool_at + PC_QUEUE_HANDOFFS]))
        loads = words[table.loads_at:table.loads_at + table.capacity]
        weights = words[table.weights_at:table.weights_at + table.capacity]
        return (round(now, 4), rows, [loads[slot] & LOAD_MASK for slot in self.slots],
                [(weights[slot] & WEIGHT_MASK, loads[slot] >> 32) for slot in self.slots])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self.sample())
            except (ValueError, IndexError):   # a worker restarting mid-read: skip it
                continue


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def summary(samples: list[Sample], labels: list[str] | None = None) -> dict[str, Any]:
    """Per worker: connections, queue depth, head age, places taken (by its waiters and in
    all), places freed; per member: capacity, in flight, and the share of the time a place
    stood free while a request waited in some worker (a freed place idling)."""
    if len(samples) < 2:
        return {}
    workers: dict[int, dict[str, Any]] = {}
    slots = len(samples[0][2])
    labels = labels or [str(i) for i in range(slots)]
    idle = [0] * slots           # samples with a free place while someone waited
    spans: list[list[float]] = [[] for _ in range(slots)]   # idle spans, seconds
    opened: list[float | None] = [None] * slots
    # per open span: the progress (finished + dequeued) of the workers that had waiters when
    # it opened; a long span over which none of them moved is a "frozen" one (not running)
    marks: list[dict[int, int]] = [{} for _ in range(slots)]
    frozen = [0] * slots
    last_progress: dict[int, int] = {}
    waiting_samples = 0
    inflight_sum = [0] * slots
    previous: dict[int, tuple[Any, ...]] = {}
    steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(samples))
    step = steps[len(steps) // 2]   # the sampler's usual interval
    last_t = samples[0][0]
    for t, rows, caps, *_ in samples:
        waiting = sum(row[2] for row in rows)
        totals = [sum(row[5][k][0] for row in rows) for k in range(slots)]
        progress = {row[0]: row[4] + sum(m[1] for m in row[5]) for row in rows}
        blind = t - last_t > SAMPLER_LATE * step   # the sampler itself did not run
        last_t = t
        for k in range(slots):
            inflight_sum[k] += totals[k]
            free = bool(waiting) and totals[k] < caps[k]
            start = opened[k]
            if blind and start is not None:   # what it did meanwhile is not known
                opened[k] = start = None
            if free and start is None:
                opened[k] = t
                marks[k] = {row[0]: progress[row[0]] for row in rows if row[2]}
            elif not free and start is not None:
                spans[k].append(t - start)
                opened[k] = None
                if t - start >= LONG_IDLE and marks[k] and all(
                        last_progress.get(i) == p for i, p in marks[k].items()):
                    frozen[k] += 1
        last_progress = progress
        if waiting:
            waiting_samples += 1
            for k in range(slots):
                if totals[k] < caps[k]:
                    idle[k] += 1
        for row in rows:
            index, conns, queued, age, dequeued, per_member = row[:6]
            w = workers.setdefault(index, {"conns": [], "depth": [], "ages": [],
                                           "dequeued": 0, "started": [0] * slots,
                                           "finished": [0] * slots, "handed_over": 0})
            w["conns"].append(conns)
            w["depth"].append(queued)
            if queued:
                w["ages"].append(age)
            before = previous.get(index)
            if before is not None:
                w["dequeued"] += dequeued - before[4]
                if len(row) > 6 and len(before) > 6:
                    w["handed_over"] += row[6] - before[6]
                for k in range(slots):
                    done = per_member[k][1] - before[5][k][1]
                    w["finished"][k] += done
                    w["started"][k] += per_member[k][0] - before[5][k][0] + done
            previous[index] = row
    n = len(samples)
    out: dict[str, Any] = {"samples": n, "seconds": round(samples[-1][0] - samples[0][0], 2),
                           "workers": {}, "members": {}}
    for index, w in sorted(workers.items()):
        out["workers"][str(index)] = {
            "conns": _pct(w["conns"], 50),
            "depth_mean": round(sum(w["depth"]) / max(1, len(w["depth"])), 2),
            "depth_max": max(w["depth"], default=0),
            "head_age_p50_ms": round(_pct(w["ages"], 50), 1),
            "head_age_p99_ms": round(_pct(w["ages"], 99), 1),
            "head_age_max_ms": round(max(w["ages"], default=0.0), 1),
            "dequeued": w["dequeued"],
            "started": dict(zip(labels, w["started"], strict=True)),
            "finished": dict(zip(labels, w["finished"], strict=True)),
            "handed_over": w["handed_over"],
        }
    for k, label in enumerate(labels):
        out["members"][label] = {
            "capacity": samples[-1][2][k],
            "in_flight_mean": round(inflight_sum[k] / n, 2),
            "idle_while_waiting": round(idle[k] / max(1, waiting_samples), 3),
            **_spans(spans[k], samples[0][0], samples[-1][0]),
            "long_idle_frozen": frozen[k],
        }
    out["waiting_share"] = round(waiting_samples / n, 3)
    return out


def _spans(spans: list[float], first: float, last: float) -> dict[str, Any]:
    """Idle spans of one member: how many, how long (ms), and the share of the run that
    spans longer than LONG_IDLE (places nobody took) add up to."""
    long = [span for span in spans if span >= LONG_IDLE]
    return {"idle_spans": len(spans),
            "idle_span_p50_ms": round(_pct(spans, 50) * 1000, 1),
            "idle_span_max_ms": round(max(spans, default=0.0) * 1000, 1),
            "long_idle_spans": len(long),
            "long_idle_share": round(sum(long) / max(1e-9, last - first), 4)}
