"""scripts/bench: where the three backends live. `Lab`: real Apache httpds in the
network-namespace lab's backend hosts (this process runs on its front host), heartbeating to
the multicast group. `Loopback`: nginx on 127.0.0.2-4, with a Beacon per backend sending
heartbeats to each hbfork's unicast port."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from hbfork.beat.beacon import Beacon
from loadtest.bench.lab import netns
from loadtest.bench.procs import free_port
from loadtest.bench.programs.configs import GROUP, apache_backend_conf, nginx_backend_conf
from loadtest.bench.programs.servers import Server, spawn, wait_http


class Lab:
    """Backends are real Apache httpds in the lab's backend namespaces (this process runs in
    the front namespace), heartbeating to the multicast group."""

    kind = "netns"

    def __init__(self, prefix: str, workdir: Path) -> None:
        self.lab = netns.Lab(prefix=prefix)
        self.workdir = workdir
        self.backends: list[Any] = []

    def start_backends(self) -> list[Any]:
        for i, host in enumerate(self.lab.backends, 1):
            name = f"b{i}"
            directory = self.workdir / f"backend-{name}"
            directory.mkdir(parents=True, exist_ok=True)
            conf = directory / "httpd.conf"
            conf.write_text(apache_backend_conf(directory, name, host.address, 80))
            proc = spawn(name, ["apache2", "-f", str(conf), "-DFOREGROUND"], directory,
                         prefix=["ip", "netns", "exec", host.netns])
            server = Server(name, host.address, 80, proc, directory, {"kind": "apache"})
            self.backends.append(server)
        for server in self.backends:
            wait_http(server)
        return self.backends

    @property
    def members(self) -> list[str]:
        return [f"{b.host}:{b.port}" for b in self.backends]

    def heartbeat_listen(self) -> str:
        return GROUP

    def describe(self) -> str:
        return ("network-namespace lab (loadtest/bench/lab/netns.py): a bridge, a front host "
                "10.213.0.1 and three backend hosts 10.213.0.11-13 joined by veth pairs. Backends: "
                "Apache httpd 2.4 (mpm_event, 3 x 64 threads, unlimited keep-alive, "
                "sendfile) serving a 604-byte, a 16 KiB and a 1 MiB file with an X-Backend "
                "header, reading POSTed bodies at /upload to the end and discarding them "
                "(mod_lua, loadtest/bench/lua/upload.lua), each multicasting mod_heartbeat "
                "to 239.0.0.1:27999 once a second. Fronts and wrk run on the front host; "
                "all hosts share the machine's cores.")

    def stop(self) -> None:
        for server in self.backends:
            server.stop()


class Loopback:
    """Backends are nginx on 127.0.0.2-4; a Beacon per (backend, hbfork) sends heartbeats."""

    kind = "loopback"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.backends: list[Any] = []
        self.beacons: list[Any] = []

    def start_backends(self) -> list[Any]:
        for i in range(1, 4):
            name, address = f"b{i}", f"127.0.0.{i + 1}"
            port = free_port(address)
            directory = self.workdir / f"backend-{name}"
            directory.mkdir(parents=True, exist_ok=True)
            conf = directory / "nginx.conf"
            conf.write_text(nginx_backend_conf(directory, name, address, port))
            proc = spawn(name, ["nginx", "-p", str(directory), "-c", str(conf), "-e",
                                "stderr"], directory)
            self.backends.append(Server(name, address, port, proc, directory,
                                        {"kind": "nginx"}))
        for server in self.backends:
            wait_http(server)
        return self.backends

    @property
    def members(self) -> list[str]:
        return [f"{b.host}:{b.port}" for b in self.backends]

    def heartbeat_listen(self) -> str:
        port = free_port(kind=socket.SOCK_DGRAM)
        for backend in self.backends:
            beacon = Beacon(("127.0.0.1", port), port=backend.port, source=backend.host)
            beacon.start(lambda: (100, 1))
            self.beacons.append(beacon)
        return f"127.0.0.1:{port}"

    def describe(self) -> str:
        return ("loopback only: three nginx backends (one worker each, unlimited keep-alive) "
                "on 127.0.0.2-4 serving a 604-byte, a 16 KiB and a 1 MiB file with an "
                "X-Backend header, reading POSTed bodies at /upload to the end before "
                "answering (mirror_request_body) and discarding them; heartbeats "
                "(ready=100) are sent for them by hbfork.beat.Beacon to each hbfork's unicast "
                "heartbeat port. Apache cannot receive heartbeats here (HeartbeatListen needs "
                "multicast), so its front uses lbmethod=byrequests as a stand-in.")

    def stop(self) -> None:
        for beacon in self.beacons:
            beacon.stop()
        for server in self.backends:
            server.stop()
