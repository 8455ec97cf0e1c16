"""mod_remoteip in import-apache [pure]: RemoteIPHeader, RemoteIPTrustedProxy,
RemoteIPInternalProxy and RemoteIPProxyProtocol become [http] client_ip_header, [proxy]
trusted_proxies and `proxy_protocol` on the listeners; what has no hbfork equivalent is a note.

Differences an operator must know are written next to the settings: hbfork has one trusted
list (Apache's per-vhost lists are merged), and it walks past every listed address alike
(mod_remoteip does not take a private address presented by a RemoteIPTrustedProxy, which
hbfork does when that address is the first unlisted one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbfork.apache.conf import Directive, Note, Setting, TablePlan
from hbfork.core.addresses import parse_network
from hbfork.core.values import HEADER_NAME

ANY_SOURCE = ["0.0.0.0/0", "::/0"]
PROXY_KEYS = frozenset({"remoteiptrustedproxy", "remoteipinternalproxy"})
LEFT_OUT = {
    "remoteiptrustedproxylist": "the file is not read: list its addresses in [proxy] "
                                "trusted_proxies",
    "remoteipinternalproxylist": "the file is not read: list its addresses in [proxy] "
                                 "trusted_proxies",
    "remoteipproxiesheader": "hbfork records the proxies it walked past in no header (the "
                             "X-Forwarded-For it sends on keeps the whole chain)",
    "remoteipproxyprotocolexceptions": "a proxy_protocol listener requires the header from "
                                       "every connection: excepted hosts are not",
}
KEYS = frozenset({"remoteipheader", "remoteipproxyprotocol", *PROXY_KEYS, *LEFT_OUT})


@dataclass
class RemoteIpPlan:
    proxy: list[Setting] = field(default_factory=list)   # [proxy] settings
    http: list[Setting] = field(default_factory=list)    # [http] settings
    proxy_protocol: Directive | None = None              # RemoteIPProxyProtocol On
    notes: list[Note] = field(default_factory=list)


def plan_remoteip(found: list[Directive]) -> RemoteIpPlan:
    """The plan for the mod_remoteip directives `found` (in file order)."""
    plan = RemoteIpPlan()
    networks: list[str] = []
    sources: list[str] = []
    header: Directive | None = None
    for d in found:
        if d.key in LEFT_OUT:
            plan.notes.append(Note.of(d, LEFT_OUT[d.key]))
        elif d.key == "remoteipheader":
            if len(d.args) != 1 or not HEADER_NAME.fullmatch(d.args[0]):
                plan.notes.append(Note.of(d, "not a header name"))
            elif header is not None and header.args[0].lower() != d.args[0].lower():
                plan.notes.append(Note.of(header, f"overridden by {d.text} ({d.where}): hbfork "
                                                  "reads one client header"))
                header = d
            else:
                header = d
        elif d.key in PROXY_KEYS:
            taken = _networks(d, plan.notes)
            networks += [n for n in taken if n not in networks]
            if taken:
                sources.append(f"{d.text} ({d.where})")
        elif d.key == "remoteipproxyprotocol":
            if d.args and d.args[0].lower() == "on":
                plan.proxy_protocol = d
            elif not d.args or d.args[0].lower() != "off":
                plan.notes.append(Note.of(d, "expected On or Off"))
    if header is not None:
        plan.http.append(Setting("client_ip_header", header.args[0],
                                 f"{header.text} ({header.where}); read only from "
                                 "trusted_proxies"))
    if networks:
        comment = "from " + "; ".join(sources)
        if any(d.key == "remoteiptrustedproxy" for d in found):
            comment += ". hbfork passes every listed address alike (Apache does not take a " \
                       "private address presented by a RemoteIPTrustedProxy)"
        plan.proxy.append(Setting("trusted_proxies", networks, comment))
    elif header is not None:
        plan.notes.append(Note.of(header, "no RemoteIPTrustedProxy/RemoteIPInternalProxy: "
                                          "hbfork trusts no proxy's header until "
                                          "[proxy] trusted_proxies lists them"))
    return plan


def _networks(d: Directive, notes: list[Note]) -> list[str]:
    out = []
    for arg in d.args:
        try:
            out.append(str(parse_network(arg)))
        except ValueError:
            notes.append(Note.of(d, "host names are not resolved: list the proxy's addresses",
                                 f"{d.name} {arg}"))
    return out


def apply_proxy_protocol(plan: RemoteIpPlan, listens: list[TablePlan],
                         plain: list[str]) -> list[TablePlan]:
    """Every listener gets `proxy_protocol = true` (plain [proxy] listen addresses become
    [[listen]] blocks); the sources are the trusted proxies, else anyone, as Apache has it."""
    d = plan.proxy_protocol
    if d is None:
        return listens
    blocks = listens or [TablePlan("listen", [f"from [proxy] listen ({d.text})"],
                                   [Setting("address", address)]) for address in plain]
    trusted = plan.proxy[0].value if plan.proxy else None
    for block in blocks:
        block.set("proxy_protocol", True, f"{d.text} ({d.where})")
        if trusted is None:
            block.set("proxy_protocol_from", ANY_SOURCE,
                      "Apache takes the header from any source: list your balancers here")
    return blocks
