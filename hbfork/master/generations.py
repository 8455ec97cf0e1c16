"""Worker generations: the one serving, a reload waiting for its workers, and old ones draining.

A reload with a valid config starts a new generation; once all of its workers say "ready", the
older generations are told to drain. Listeners live in the master for its whole life, so
connections queued during a reload are accepted by whichever generation is serving; a listener
no serving generation uses any more is closed once the old workers have let go of it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from hbfork.core.config import Config
from hbfork.core.settings import MAX_WORKERS
from hbfork.master.bindings import Bindings
from hbfork.master.workers import READY_TIMEOUT, WorkerProcess, Workers
from hbfork.system.logs import log
from hbfork.system.tls import TlsContexts


@dataclass(eq=False)
class Generation:
    number: int
    config: Config
    listeners: list[socket.socket]   # in the order of config.listeners
    size: int
    tls: TlsContexts | None = None
    started: float = field(default_factory=time.monotonic)


class Generations:
    def __init__(self, workers: Workers, bindings: Bindings) -> None:
        self.workers = workers
        self.bindings = bindings
        self.known: dict[int, Generation] = {}
        self.current: Generation | None = None
        self.pending: Generation | None = None   # a reload waiting for its workers to be ready

    def config_of(self, worker: WorkerProcess, default: Config) -> Config:
        generation = self.known.get(worker.generation)
        return generation.config if generation is not None else default

    # --- starting

    def spawn(self, config: Config, tls: TlsContexts | None = None) -> Generation:
        """Start a generation for `config` (and its certificates): the first one serves at
        once, later ones wait until their workers are ready (then the older ones drain)."""
        number = max(self.known, default=0) + 1
        listeners = [self.bindings.listeners[entry.address] for entry in config.listeners]
        generation = Generation(number, config, listeners, config.proxy.workers, tls=tls)
        self.known[number] = generation
        if self.current is None:
            self.current = generation
        else:
            self.pending = generation
        self._fill(generation)
        return generation

    def _fill(self, generation: Generation) -> None:
        """Fork the workers a generation is missing (numbers 1..size)."""
        have = {w.number for w in self.workers.serving(generation.number)}
        for number in range(1, generation.size + 1):
            if number not in have and not self.workers.spawn(
                    generation.config, generation.listeners, self.bindings.status_listener,
                    number, generation.number, generation.tls):
                return

    def abandon_pending(self) -> None:
        """A newer config supersedes a reload whose workers are not ready yet."""
        if self.pending is None:
            return
        log.warning("reload: abandoning generation %d for a newer config", self.pending.number)
        for worker in self.workers.generation(self.pending.number):
            self.workers.stop_fast(worker)
        self.pending = None

    def resize(self, delta: int) -> None:
        """SIGTTIN / SIGTTOU: one worker more or fewer in the newest generation."""
        generation = self.pending or self.current
        if generation is None:
            return
        size = max(1, min(MAX_WORKERS, generation.size + delta))
        if size != generation.size:
            generation.size = size
            log.info("workers: now %d (SIG%s)", size, "TTIN" if delta > 0 else "TTOU")

    # --- every loop iteration

    def maintain(self) -> None:
        """Keep the serving generation at its size; finish a reload once its workers are up."""
        for generation in (self.current, self.pending):
            if generation is not None:
                self._fill(generation)
        current = self.current
        if current is not None:
            for worker in sorted(self.workers.serving(current.number), key=lambda w: w.number):
                if worker.number > current.size:  # SIGTTOU
                    self.workers.drain(worker, current.config.proxy.shutdown_timeout)
        pending = self.pending
        if pending is not None:
            ready = [w for w in self.workers.serving(pending.number) if w.ready]
            if len(ready) >= pending.size:
                self._finish_reload(pending)
            elif time.monotonic() - pending.started > READY_TIMEOUT:
                log.error("reload: the new workers are not ready after %.0fs; the old ones keep "
                          "serving and the new ones keep being retried", READY_TIMEOUT)
                pending.started = time.monotonic()
        self._close_unused_listeners()

    def _finish_reload(self, pending: Generation) -> None:
        for worker in list(self.workers.processes.values()):
            if worker.generation != pending.number:
                self.workers.drain(worker, self.known[worker.generation].config
                                   .proxy.shutdown_timeout)
        self.current, self.pending = pending, None
        log.info("reload complete: generation %d serving, older workers draining",
                 pending.number)

    def _close_unused_listeners(self) -> None:
        """Forget generations without workers, and close listeners no serving generation
        uses: draining workers closed their copies already, so a listener kept only for them
        would complete handshakes nobody accepts."""
        live = {w.generation for w in self.workers.processes.values()}
        serving = [g for g in (self.current, self.pending) if g is not None]
        live.update(g.number for g in serving)
        for number in list(self.known):
            if number not in live:
                del self.known[number]
        keep = {id(sock) for g in serving for sock in g.listeners}
        for endpoint in self.bindings.close_listeners_except(keep):
            log.info("closed listener %s (no longer configured)", endpoint)
