"""`hbfork run` whose workers can be put under cProfile by a signal, for scripts/profile-http.

    python -m loadtest.bench.profile.worker -c CONF   (HBFORK_PROFILE_DIR=DIR in the environment)

The master is hbfork's own; each worker it forks installs a SIGPROF handler before running
hbfork's Worker unchanged. The first SIGPROF sent to a worker starts a cProfile.Profile timed by
the thread's CPU clock (so the time a worker sleeps in epoll_wait counts as nothing, and the
kernel's share of each syscall counts for the call that made it); the next SIGPROF stops it and
writes DIR/worker-PID.prof. The handler runs in the worker's main thread (Python runs signal
handlers there), which is the thread the loop runs in and the only one cProfile can see.
Without a SIGPROF the worker runs exactly as under `hbfork run`.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time
from pathlib import Path

from hbfork.master.master import Master
from hbfork.proxy.worker import run_worker
from hbfork.system.configfile import load


class _Toggle:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.profile: cProfile.Profile | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.profile is None:
            self.profile = cProfile.Profile(time.thread_time)
            self.profile.enable()
            return
        self.profile.disable()
        target = self.directory / f"worker-{os.getpid()}.prof"
        self.profile.dump_stats(str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)  # the reader waits for the final name
        self.profile = None


def profiled_worker(**kwargs: object) -> int:
    signal.signal(signal.SIGPROF, _Toggle(Path(os.environ["HBFORK_PROFILE_DIR"])))
    return run_worker(**kwargs)


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "-c":
        raise SystemExit(__doc__)
    return Master(load(sys.argv[2]), profiled_worker).run()


if __name__ == "__main__":
    sys.exit(main())
