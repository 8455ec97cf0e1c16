"""Conventions between the master and its workers that both sides must agree on."""

from __future__ import annotations

import ctypes

from hbfork.system.logs import log

# A worker that could not start exits with this code: the master backs off before forking
# another, instead of forking in a tight loop.
EXIT_BOOT_FAILURE = 3
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel signal this process when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("PR_SET_PDEATHSIG unavailable; relying on the death pipe alone")
