"""HTTP mode: the per-connection session (`session.HttpSession`), composed of parts with their
interfaces declared in `parts` (the client connection, the member leg, the response relay, the
fast path), and a fresh `exchange.Exchange` per request. Framing, grammar and the heads written
are `hbfork.core`'s (`http11`, `grammar`, `lean`, `http_heads`).

May import what `hbfork.proxy` may, and `hbfork.proxy` modules other than the worker.
"""
