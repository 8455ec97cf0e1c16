"""hbfork: a pre-forking front proxy that balances by the heartbeats its members send."""

__version__ = "0.1.0"
