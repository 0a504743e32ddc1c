"""The calling thread's Linux scheduler statistics (``/proc/thread-self/schedstat``): seconds on
a CPU and seconds runnable but waiting for one. Shared by the collab write pace (how much CPU the
event loop's thread asks for) and the loop watch (what the machine, not the server, delayed).

The file stays open, one per thread (``thread-self`` is resolved when it is opened), and each
reading is one ``pread`` from offset 0, which makes the kernel write it afresh: opening and reading
it anew took nine system calls. A child process after ``fork`` opens its own.
"""

from __future__ import annotations

import os
import threading

PATH = "/proc/thread-self/schedstat"

_files = threading.local()


def _forget_after_fork() -> None:
    fd = getattr(_files, "fd", None)
    if fd is not None:  # the forking thread's file, the parent's thread: not ours
        _files.fd = None
        try:
            os.close(fd)
        except OSError:
            pass


os.register_at_fork(after_in_child=_forget_after_fork)


def read() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of the calling thread, or None
    where Linux's schedstat is missing."""
    try:
        fd = getattr(_files, "fd", None)
        if fd is None:
            fd = _files.fd = os.open(PATH, os.O_RDONLY | os.O_CLOEXEC)
        fields = os.pread(fd, 128, 0).split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None
