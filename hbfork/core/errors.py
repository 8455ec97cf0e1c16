"""The one error hierarchy: every error hbfork raises on purpose derives from HbforkError."""

from __future__ import annotations


class HbforkError(Exception):
    """Base of every error hbfork raises deliberately."""


class ConfigError(HbforkError):
    """A configuration problem, always naming the file, the key and what is wrong."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class HeartbeatError(HbforkError):
    """A heartbeat that cannot be accepted; `reason` is a short stable code for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ProtocolError(HbforkError):
    """A client spoke HTTP wrongly; `status` is the response code to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status} {detail}")
