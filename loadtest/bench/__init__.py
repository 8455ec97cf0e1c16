"""The benchmark harness: every `scripts/bench*`, `scripts/simulate` and `scripts/profile-http`
lives here, the scripts being thin entry points (`python -m loadtest.bench.<module>`).

Shared pieces, one of each: `procs` (start, wait-ready and stop programs, by pid), `proc_stats`
(CPU and memory of processes from /proc), `wrk` (the one wrk runner and its parser),
`markdown` (sections of BENCHMARKS.md), `stats` (medians, percentiles, number formats).
Subpackages by concern: `lab` (loopback and network-namespace topologies), `programs` (the
configs and launch of hbfork, nginx, HAProxy and Apache), `clients` (open-loop, idle and
heartbeat load), `suite` (scripts/bench), `scenarios` (the single-question benchmarks),
`micro` (pick cost, fast-path prototypes), `profile`, `sim` (scripts/simulate), `report`.

May import `hbfork` (it measures it) and the standard library; matplotlib only where a chart is
drawn. Nothing in `hbfork` or in `tests/unit` imports this package.
"""
