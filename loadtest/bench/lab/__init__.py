"""Lab topologies: `loopback` (members on 127.0.0.2/.3, fronts on 127.0.0.1), `netns` (an
isolated LAN of network namespaces, root only, for multicast and real Apache), and `inlab`
(re-running a benchmark on the front host of a fresh netns lab). May import `procs`,
`proc_stats` and hbfork's Beacon."""
