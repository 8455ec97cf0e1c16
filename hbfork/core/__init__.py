"""Pure logic: the heartbeat wire format and its signing, member rules, the balancer pick,
HTTP/1.1 framing, the configuration model and its validation, rate limiters, and the one error
hierarchy.

Nothing here opens a socket or a file, or reads a clock: callers pass `now` in, so every
function can be driven by tests with bytes and numbers. May import only the standard library
and other `hbfork.core` modules.
"""
