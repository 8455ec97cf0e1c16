"""keepalived in the namespace lab: a VRRP pair of hbfork fronts holding the lab's virtual IP.

Each keepalived runs inside its front's namespace (`ip netns exec` execs it in place, so its
pid is the parent keepalived's own), in the foreground, logging to its stdout file, with pid
files of its own; VRRP adverts go unicast to the peer front over the lab bridge. Its
vrrp_script is `hbfork health -c` for that front's config, with conf/keepalived's settings
(interval 1, timeout 2, fall 2, rise 2).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from labkit import Launcher, Service, netlab, wait_for

KEEPALIVED = shutil.which("keepalived") or shutil.which("keepalived", path="/usr/sbin:/sbin")
ROUTER_ID = 51
MASTER_LINE = re.compile(r"\((\w+)\) Entering MASTER STATE")
HEALTH_TIMEOUT = 1.5  # seconds `hbfork health` waits for the master: below the script timeout


def keepalived_unavailable_reason() -> str | None:
    if KEEPALIVED is None:
        return "keepalived is not installed (apt-get install keepalived; ./scripts/test " \
               "installs it when run as root)"
    return None


def keepalived_config(lab: netlab.Lab, front: str, peers: list[str], priority: int,
                      hbfork_config: Path, directory: Path) -> str:
    me = lab.host(front)
    peer_lines = "\n".join(f"        {lab.host(p).address}" for p in peers)
    health = (f"{sys.executable} -m hbfork health -q --timeout {HEALTH_TIMEOUT:g} "
              f"-c {hbfork_config}")
    return f"""\
global_defs {{
    router_id {front}
    script_user root
}}

vrrp_script hbfork_health {{
    script "{health}"
    interval 1
    timeout 2
    fall 2
    rise 2
}}

vrrp_instance hbfork_vip {{
    state BACKUP
    nopreempt
    interface {netlab.HOST_IFACE}
    virtual_router_id {ROUTER_ID}
    priority {priority}
    advert_int 1
    unicast_src_ip {me.address}
    unicast_peer {{
{peer_lines}
    }}
    authentication {{
        auth_type PASS
        auth_pass hbforkvr
    }}
    virtual_ipaddress {{
        {lab.virtual_ip}/24 dev {netlab.HOST_IFACE}
    }}
    track_script {{
        hbfork_health
    }}
}}
"""


class Keepalived(Service):
    def start(self, config_text: str) -> Keepalived:
        config = self.dir / "keepalived.conf"
        config.write_text(config_text)
        assert KEEPALIVED is not None
        self.spawn([KEEPALIVED, "--dont-fork", "--log-console", "--log-detail", "--vrrp",
                    "--no-syslog", "-f", str(config), "-p", str(self.dir / "keepalived.pid"),
                    "-r", str(self.dir / "vrrp.pid"), "-c", str(self.dir / "checkers.pid")])
        return self

    def log(self) -> str:
        parts = [path.read_text(errors="replace") for path in sorted(self.dir.glob("*.log"))]
        return "\n".join(parts)

    def masters(self) -> int:
        """How many times this keepalived has entered MASTER state."""
        return len(MASTER_LINE.findall(self.log()))


def prepare_front(lab: netlab.Lab, front: str) -> None:
    """The VIP also on lo (/32), answered by ARP only where keepalived put it on eth0.

    When keepalived takes the VIP off a front's eth0, that front can no longer send from it or
    receive for it: requests in flight there would hang until the client times out. Kept on
    lo, the old front finishes them (the client's packets still reach it until the new
    owner's gratuitous ARP). arp_ignore=1: answer ARP only for addresses of the interface
    asked on; arp_announce=2: never use the lo VIP as the source of an ARP request."""
    for scope in ("all", netlab.HOST_IFACE):
        for key, value in (("arp_ignore", "1"), ("arp_announce", "2")):
            done = lab.run(front, ["sysctl", "-q", "-w", f"net.ipv4.conf.{scope}.{key}={value}"])
            assert done.returncode == 0, done
    done = lab.run(front, ["ip", "addr", "replace", f"{lab.virtual_ip}/32", "dev", "lo"])
    assert done.returncode == 0, done


def start_keepalived(launcher: Launcher, front: str, peers: list[str], priority: int,
                     hbfork_config: Path) -> Keepalived:
    prepare_front(launcher.lab, front)
    # A directory of its own: the launcher's numbering repeats from test to test, and the
    # MASTER count must read this keepalived's log only.
    directory = Path(tempfile.mkdtemp(prefix=f"keepalived-{front}-", dir=launcher.workdir))
    service = Keepalived(launcher.lab, front, f"keepalived-{front}", directory)
    launcher.services.append(service)
    return service.start(keepalived_config(launcher.lab, front, peers, priority,
                                           hbfork_config, service.dir))


def vip_owners(lab: netlab.Lab) -> list[str]:
    """The fronts whose eth0 holds the virtual IP right now."""
    owners = []
    for host in lab.fronts:
        shown = lab.run(host.name, ["ip", "-o", "-4", "addr", "show", "dev", netlab.HOST_IFACE])
        if f" {lab.virtual_ip}/" in shown.stdout:
            owners.append(host.name)
    return owners


def wait_owner(lab: netlab.Lab, front: str, timeout: float, what: str) -> None:
    wait_for(lambda: vip_owners(lab) == [front], timeout,
             lambda: f"{what}: the VIP is on {vip_owners(lab)}, expected [{front!r}]",
             interval=0.05)
