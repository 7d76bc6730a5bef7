"""Kicking a vCPU thread out of KVM_RUN with a signal, as QEMU does.

A signal with a handler (not SA_RESTART) makes KVM_RUN return -1/EINTR with exit reason
KVM_EXIT_INTR.  Python signal handlers can only be installed from the main thread, so
:func:`install` is called early (at ``kvmlab.open("hw")``) from the main thread when
possible.
"""
from __future__ import annotations

import signal
import threading

SIGNAL = signal.SIGUSR1
_installed = False
_devnull = None


def _noop(signum, frame):  # the interruption itself is the point
    pass


def install() -> bool:
    """Install the no-op handler for SIGNAL; True if it is (or already was) installed."""
    global _installed
    if _installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        # signal.signal() works only in the main thread; faulthandler installs a C-level
        # handler from any thread (without SA_RESTART, so KVM_RUN still returns EINTR).
        # Without some handler, SIGNAL's default action would kill the process.
        if signal.getsignal(SIGNAL) not in (signal.SIG_DFL, None):
            _installed = True
            return True
        import faulthandler
        import os
        global _devnull
        _devnull = open(os.devnull, "w")  # noqa: SIM115 - must outlive every kick
        faulthandler.register(SIGNAL, file=_devnull, all_threads=False, chain=False)
        _installed = True
        return True
    if signal.getsignal(SIGNAL) in (signal.SIG_DFL, None):
        signal.signal(SIGNAL, _noop)
    _installed = True
    return True
