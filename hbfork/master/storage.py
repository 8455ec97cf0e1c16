"""The master's file side of heartbeats: writing hb.dat for tools that read mod_heartmonitor's
file, and reading another monitor's hb.dat as a heartbeat source. The writes happen on a
thread (hbfork.ops.hbdat.StorageWriter), so the master loop never waits for a disk."""

from __future__ import annotations

import time

from hbfork.core.config import Config
from hbfork.core.members import Registry
from hbfork.master.monitor import Monitor
from hbfork.ops.hbdat import StorageWriter, format_storage
from hbfork.system.logs import describe_error, log

SOURCE_INTERVAL = 1.0  # seconds between looks at a source file


class StorageFiles:
    def __init__(self) -> None:
        self.writer: StorageWriter | None = None
        self._written = 0.0
        self._source_read = 0.0

    def configure(self, config: Config) -> None:
        """Start, move or stop the hb.dat writer for `config`."""
        path = config.resolve(config.heartbeat.storage)
        if self.writer is not None and self.writer.path != path:
            self.writer.stop()
            self.writer = None
        if path and self.writer is None:
            self.writer = StorageWriter(path, lambda err: log.error(
                "cannot write the storage file: %s", describe_error(err)))
            self._written = 0.0

    def tick(self, config: Config, registry: Registry, monitor: Monitor) -> None:
        """Write hb.dat every storage_interval, and within a second of a change; read a
        source file once a second."""
        now = time.monotonic()
        hb = config.heartbeat
        if self.writer is not None:
            due = self._written + hb.storage_interval
            if monitor.changed_at > self._written:
                due = min(due, self._written + 1.0)
            if now >= due:
                self._written = now
                self.writer.submit(format_storage(registry, time.monotonic_ns()))
        if hb.source and now - self._source_read >= SOURCE_INTERVAL:
            self._source_read = now
            path = config.resolve(hb.source.removeprefix("file:")) or ""  # config: never ""
            try:
                monitor.read_source_file(path, time.monotonic_ns(), time.time())
            except OSError as err:
                log.error("cannot read the source file: %s", describe_error(err))

    @property
    def active(self) -> bool:
        return self.writer is not None

    def stop(self, registry: Registry | None = None) -> None:
        """Stop the writer; with `registry`, write its state one last time first, so that
        the next start restores what this master knew when it stopped."""
        if self.writer is not None:
            if registry is not None:
                self.writer.submit(format_storage(registry, time.monotonic_ns()))
            self.writer.stop()
