"""The supervisor process: binds the sockets, owns the heartbeat intake and the table writer,
forks, reaps and respawns workers by generation, handles signals and reloads, and serves the
control socket.

May import `hbfork.core`, `hbfork.table`, `hbfork.system` and `hbfork.ops`; never
`hbfork.proxy` (what a worker runs after fork is handed in by `hbfork.cli`).
"""
