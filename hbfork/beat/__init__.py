"""Sending heartbeats: the `Beacon` API a Python service uses to report its own load (the engine
of `hbfork beat`), and the small demo/test backend that beats its real load.

May import `hbfork.core`.
"""

from hbfork.beat.beacon import Beacon, Load

__all__ = ["Beacon", "Load"]
