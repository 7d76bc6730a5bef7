"""kernel/signal.c as KVM_RUN sees it: ``signal_pending(current)`` for the vCPU thread.

Real KVM_RUN returns -EINTR / KVM_EXIT_INTR when a signal is pending for the vCPU's
thread.  A Python process learns about signals through CPython's C-level handler, which
writes the signal number to the *wakeup fd* if one is set.  The simulated kernel installs
its own non-blocking wakeup pipe (only if nobody else uses the wakeup fd, and only from
the main thread, where Python runs signal handlers), so the run loop can ask "did a
signal arrive since KVM_RUN started?" between instruction budgets and while a vCPU is
halted.  SIGINT (Ctrl-C) needs none of this: Python raises KeyboardInterrupt in the run
loop, which ends KVM_RUN with KVM_EXIT_INTR and re-raises it.
"""
from __future__ import annotations

import os
import signal
import threading

_r = _w = None
_installed = False
_unavailable = False


def install():
    """Install the wakeup pipe if possible; True if signals can be detected here."""
    global _r, _w, _installed, _unavailable
    if _installed:
        return True
    if _unavailable or threading.current_thread() is not threading.main_thread():
        return False
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(r)
        os.close(w)
        _unavailable = True
        return False
    if old != -1:                       # somebody (asyncio, the user) owns the wakeup fd
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)
        _unavailable = True
        return False
    _r, _w, _installed = r, w, True
    return True


def pending() -> bool:
    """True if a signal arrived since the last call (the pipe is emptied)."""
    if not _installed:
        return False
    got = False
    while True:
        try:
            if not os.read(_r, 256):
                break
            got = True
        except BlockingIOError:
            break
        except OSError:
            break
    return got
