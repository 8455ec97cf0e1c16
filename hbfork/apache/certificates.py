"""The TLS servers' certificates and protocol settings -> [[certificate]]s and [tls] [pure].

`TlsServers(main, servers, ...)` takes the servers that talk TLS on hbfork's TLS listeners (the
default server of the first TLS listener first) and makes:

* one [[certificate]] per certificate file (SSLCertificateFile, with SSLCertificateKeyFile and
  SSLCertificateChainFile as mod_ssl merged them, paths taken from the ServerRoot), whose
  `names` are the ServerName and ServerAlias of the servers that use it: the names Apache
  matches a client's SNI name against. The first is the default, as the first TLS vhost's is
  Apache's certificate for clients that send no name or one no vhost has. A certificate file
  that holds the intermediates too is loaded as it is.
* [tls]: `min_version` the strictest the servers' SSLProtocol allows (so no name accepts a
  version Apache refused it), `ciphers` and `session_tickets` the default server's
  SSLCipherSuite (with what mod_ssl adds) and SSLSessionTickets; every server that differs,
  and every mod_ssl line hbfork has no setting for, is noted.
"""

from __future__ import annotations

from collections.abc import Callable

from hbfork.apache.collect import Server, label
from hbfork.apache.conf import Directive, Note, Setting, TablePlan, resolve_path, undefined_note
from hbfork.apache.ssl import SslServer, cipher_list, min_version, protocols, unused_reason
from hbfork.apache.vhosts import own_names, server_names

OLD_VERSIONS = ("TLSv1", "TLSv1.1")


class TlsServers:
    """The servers that talk TLS, and what hbfork makes of their mod_ssl settings."""

    def __init__(self, main: Server, servers: list[Server], defaults: list[tuple[Directive,
                 Server]], server_root: str, ssl: Callable[[Server], SslServer]) -> None:
        self.main = main
        self.tls_servers = servers
        self.defaults = defaults         # (Listen line, its default server) per TLS listener
        self.server_root = server_root
        self.ssl = ssl
        self.notes: list[Note] = []
        self.remarks: list[str] = []
        self.handled: set[int] = set()   # lines used or noted
        self.certified: set[int] = set()  # the servers that got their certificate

    def note(self, d: Directive, reason: str, text: str = "") -> None:
        self.handled.add(id(d))
        self.notes.append(Note.of(d, reason, text))

    def certificates(self) -> list[TablePlan]:
        vhosts = [s for s in self.tls_servers if s is not self.main]
        names = dict(zip(map(id, vhosts), server_names(self.main, vhosts, []), strict=True))
        names[id(self.main)] = own_names(self.main, self.main)
        blocks: dict[tuple[str, str, str], TablePlan] = {}
        for server in self.tls_servers:
            files = self._files(server)
            if files is None:
                continue
            self.certified.add(id(server))
            own = names[id(server)]
            block = blocks.get(files)
            if block is None:
                block = blocks[files] = self._certificate(server, files)
            merged = [*(block.value("names") or ()), *own]
            if merged:
                block.set("names", list(dict.fromkeys(merged)), "ServerName and ServerAlias "
                          "of the vhosts that serve it: the SNI names it is chosen for")
        out = list(blocks.values())
        if out:
            out[0].set("default", True, "the first TLS vhost's: Apache gives it to clients "
                                        "that send no name, or one no vhost has")
            self._defaults()
        return out

    def _files(self, server: Server) -> tuple[str, str, str] | None:
        merged = self.ssl(server)
        if not merged.certs:
            assert server.source is not None
            self.note(server.source, "TLS with no SSLCertificateFile (Apache refuses to "
                                     "start): no certificate for it")
            return None
        for d in merged.certs[1:]:
            self.note(d, "hbfork serves one certificate per name: the first "
                         f"SSLCertificateFile of {label(server)}")
        used = (merged.certs[0], merged.keys[0] if merged.keys else None,
                merged.get("sslcertificatechainfile"))
        paths = [self._path(d) for d in used]
        if any(path is None for path in paths):
            return None
        self.handled.update(id(d) for d in used if d is not None)
        cert, key, chain = (path or "" for path in paths)
        return cert, key, chain

    def _path(self, d: Directive | None) -> str | None:
        if d is None:
            return ""
        if not d.args:
            self.note(d, "no file given")
            return None
        note = undefined_note(d, d.args[0])
        if note is not None:
            self.handled.add(id(d))
            self.notes.append(note)
            return None
        return resolve_path(self.server_root, d.args[0])

    def _certificate(self, server: Server, files: tuple[str, str, str]) -> TablePlan:
        merged = self.ssl(server)
        cert, key, chain = files
        first = merged.certs[0]
        block = TablePlan("certificate", [f"{first.text} ({first.where}), for {label(server)}"])
        block.set("cert", cert)
        if key:
            block.set("key", key, f"{merged.keys[0].text} ({merged.keys[0].where})")
        if chain:
            d = merged.get("sslcertificatechainfile")
            assert d is not None
            block.set("chain", chain, f"{d.text} ({d.where})")
        return block

    def _defaults(self) -> None:
        """hbfork has one default certificate; Apache one per TLS address."""
        first = self.defaults[0][1]
        for listen, server in self.defaults[1:]:
            if server is not first:
                self.note(listen, "hbfork has one default certificate for every TLS "
                                  "listener: the first TLS vhost's, not the one of "
                                  f"{label(server)}")

    def settings(self) -> list[Setting]:
        settings = [self._min_version()]
        settings += self._ciphers()
        settings += self._tickets()
        return settings

    def _min_version(self) -> Setting:
        versions = {}
        for server in self.tls_servers:
            d = self.ssl(server).get("sslprotocol")
            allowed, problem = protocols(d)
            if d is not None:
                self.handled.add(id(d))
                if problem:
                    self.note(d, problem)
                self._protocol_notes(d, allowed)
            versions[id(server)] = (min_version(allowed), d, server)
        chosen, d, _ = max(versions.values(), key=lambda v: v[0])
        for version, other, server in versions.values():
            where = other or server.source
            if version != chosen and where is not None:
                self.note(where, f"hbfork has one [tls] min_version for every listener: "
                                 f"the strictest, {chosen}, so clients of {label(server)} "
                                 f"need TLS {chosen} too")
        said = f"{d.text} ({d.where})" if d else \
            "no SSLProtocol: Apache's default all -SSLv3 allows TLS 1.0 to 1.3"
        return Setting("min_version", chosen, f"{said}; hbfork never accepts 1.0 or 1.1")

    def _protocol_notes(self, d: Directive, allowed: frozenset[str]) -> None:
        old = [v for v in OLD_VERSIONS if v in allowed]
        if old:
            self.note(d, "hbfork never accepts TLS 1.0 or 1.1", f"{' '.join(old)} of {d.text}")
        if "TLSv1.2" in allowed and "TLSv1.3" not in allowed:
            self.note(d, "hbfork has no maximum version: it accepts TLS 1.3 too",
                      f"no TLSv1.3 in {d.text}")
        if not {"TLSv1.2", "TLSv1.3"} & allowed:
            self.note(d, "only versions hbfork never accepts: its clients cannot connect "
                         "unless they can do TLS 1.2")

    def _ciphers(self) -> list[Setting]:
        default = self.ssl(self.tls_servers[0])
        for server in self.tls_servers:
            suites = self.ssl(server).tls13_ciphers
            if suites is not None:
                self.note(suites, "hbfork leaves TLS 1.3's cipher suites to OpenSSL")
        d = default.ciphers
        self._differs("sslciphersuite", "ciphers")
        honor = self._honor(default)
        if d is None:
            self.remarks.append("No SSLCipherSuite (Apache used OpenSSL's default list): hbfork "
                                "keeps its own [tls] ciphers, forward-secret AEAD ciphers only.")
            return []
        text, problem = cipher_list(d)
        if problem:
            self.note(d, problem + ": hbfork keeps its own [tls] ciphers")
            return []
        self.handled.add(id(d))
        return [Setting("ciphers", text, f"{d.text} ({d.where}), with the !aNULL:!eNULL:!EXP "
                                         f"mod_ssl adds{honor}")]

    def _honor(self, default: SslServer) -> str:
        """hbfork always prefers its own cipher order: SSLHonorCipherOrder on is what it does,
        off (Apache's default: the client's order) is noted."""
        for server in self.tls_servers:
            d = self.ssl(server).get("sslhonorcipherorder")
            if d is not None and not self.ssl(server).flag("sslhonorcipherorder"):
                self.note(d, "hbfork always prefers its own cipher order (as with "
                             "SSLHonorCipherOrder on)")
        d = default.get("sslhonorcipherorder")
        if d is None or not default.flag("sslhonorcipherorder"):
            return ""
        self.handled.add(id(d))
        return f"; {d.text} ({d.where}): hbfork too prefers its own order"

    def _tickets(self) -> list[Setting]:
        default = self.ssl(self.tls_servers[0])
        d = default.get("sslsessiontickets")
        self._differs("sslsessiontickets", "session_tickets")
        if d is None:
            return []
        self.handled.add(id(d))
        if default.flag("sslsessiontickets"):
            return []
        return [Setting("session_tickets", False, f"{d.text} ({d.where})")]

    def _differs(self, key: str, what: str) -> None:
        """A note for each TLS server whose `key` differs from the default TLS server's."""
        default = self.ssl(self.tls_servers[0]).get(key)
        for server in self.tls_servers[1:]:
            d = self.ssl(server).get(key)
            where = d or server.source
            if d is not default and where is not None and (
                    d is None or default is None or d.args != default.args):
                self.note(where, f"hbfork has one [tls] {what} for every listener: the first "
                                 f"TLS vhost's ({default.text if default else 'none'})")

    def unused(self) -> None:
        """The TLS servers' other mod_ssl lines: noted when hbfork does something else."""
        servers = [*self.tls_servers, *([self.main] if self.tls_servers else [])]
        for d in {id(d): d for s in servers for d in s.ssl}.values():
            reason = unused_reason(d)
            if reason is not None and id(d) not in self.handled:
                self.note(d, reason)

