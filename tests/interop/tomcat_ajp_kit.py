"""Real Tomcat 10 for the AJP interop tests (tests/interop/test_tomcat_ajp.py): one Tomcat as a
harness Process, its CATALINA_BASE made by loadtest.bench.programs.tomcat (shared with
scripts/bench-ajp)."""

from __future__ import annotations

import socket
from pathlib import Path

from loadtest.bench.programs.tomcat import SECRET, build_servlet, prepare_base, unavailable_reason
from tests.integration.harness import Process, wait_until

__all__ = ["SECRET", "Tomcat", "build_servlet", "unavailable_reason"]


class Tomcat(Process):
    """One Tomcat with an AJP connector on ip:port and jvmRoute `route`."""

    def __init__(self, base: Path, classes: Path, ip: str, port: int, route: str,
                 secret: str = SECRET, packet_size: int = 8192) -> None:
        self.ip, self.port, self.route, self.base = ip, port, route, base
        argv = prepare_base(base, classes, ip, port, route, secret, packet_size)
        super().__init__(argv, base / "tomcat.out")

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        def listening() -> bool:
            if not self.alive():
                raise AssertionError(f"tomcat {self.route} exited:\n{self.output()}")
            with socket.create_connection((self.ip, self.port), timeout=1):
                return True

        wait_until(listening, timeout, message=f"tomcat {self.route} to listen on AJP")
