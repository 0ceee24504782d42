"""Test hooks: kill the process or fail a write at a named point (never set in normal use).

``CIRCLES_TEST_KILL_AT=<point>`` makes :func:`checkpoint` kill the process with SIGKILL
when it reaches ``<point>`` (the stage boundaries of :func:`circles.pipeline.run` and
the steps of an output commit: see ``docs/architecture.md``), so that tests can check
what a killed run leaves behind. ``CIRCLES_TEST_FAIL_WRITE=<file name>`` makes
:func:`fail_write` raise ``OSError(ENOSPC)`` when that output is staged (a full disk in
the middle of writing). Both are read when called, so a test sets them for one
subprocess only.
"""

from __future__ import annotations

import errno
import os
import signal

KILL_AT = "CIRCLES_TEST_KILL_AT"
FAIL_WRITE = "CIRCLES_TEST_FAIL_WRITE"


def checkpoint(point: str) -> None:
    """Kill this process here when ``CIRCLES_TEST_KILL_AT`` names ``point``."""
    if os.environ.get(KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def fail_write(name: str) -> None:
    """Raise ``OSError(ENOSPC)`` when ``CIRCLES_TEST_FAIL_WRITE`` names ``name``."""
    if os.environ.get(FAIL_WRITE) == name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
