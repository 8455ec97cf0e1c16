"""Operations: the table snapshot behind the status page, /status.json and /metrics and their
rendering, the access log, the control socket protocol, and mod_heartmonitor's hb.dat file.

May import `hbfork.core`, `hbfork.table` and `hbfork.system`; never `hbfork.master` or
`hbfork.proxy` (they use it, on their own event loops).
"""
