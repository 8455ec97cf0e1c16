"""Micro-benchmarks with no sockets between processes: the pick cost (`pick`, scripts/bench-pick)
and the fast-path prototypes (`fastpath`, `fastpath_proto`)."""
