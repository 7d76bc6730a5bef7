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


def _noop(signum, frame):  # the interruption itself is the point
    pass


def install() -> bool:
    """Install the no-op handler for SIGNAL; True if it is (or already was) installed."""
    global _installed
    if _installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(SIGNAL) in (signal.SIG_DFL, None):
        signal.signal(SIGNAL, _noop)
    _installed = True
    return True
