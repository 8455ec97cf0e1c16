"""HTTP mode: the per-connection session state machine, split by side (client, member,
response relay, failures). Framing and header rewriting are `hbfork.core.http11`'s.

May import what `hbfork.proxy` may, and `hbfork.proxy` modules other than the worker.
"""
