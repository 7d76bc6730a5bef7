"""The one decorator of the core: ``@njit(cache=True, nogil=True)``, with bounds checking
switched on by ``KVMLAB_BOUNDSCHECK=1`` (or numba's own ``NUMBA_BOUNDSCHECK=1``).
The core never allocates, so it is compiled without the NRT (no reference counting of the
state arrays on every call).

Compile time: a call from one core function to another with a constant argument
(``raise_exc(st, GP, 0)``) would make numba compile a separate specialisation of the
callee -- and of everything it calls -- for every distinct constant (``Literal[int](13)``),
which more than doubled the number of compiled functions.  The core's dispatchers type
such calls with the plain argument types instead: one compiled version per function
(LLVM still propagates the constants where it inlines the callee).

Progress: a cold compile reports on stderr how many of the core's functions are done.
"""
import os
import sys
import time

from . import cachedir  # noqa: F401  (installs the cache locator before any compilation)
import numba
from numba.core import types
from numba.core.registry import CPUDispatcher

_BC = os.environ.get('KVMLAB_BOUNDSCHECK', os.environ.get('NUMBA_BOUNDSCHECK', '')) == '1'

DISPATCHERS = []        # every function of the core, in definition order


class _Progress:
    """Counts the core functions compiled in this process (cache misses only, so a warm
    start prints nothing) and reports on stderr: one updating line on a terminal, else a
    line about every 10%."""

    def __init__(self):
        self.done = set()
        self.shown = 0
        self.t0 = None
        self.enabled = True

    def compiled(self, disp):
        if disp in self.done:
            return
        self.done.add(disp)
        if not self.enabled:
            return
        if self.t0 is None:
            self.t0 = time.time()
        n, total = len(self.done), max(len(DISPATCHERS), len(self.done))
        try:
            tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        if tty:
            sys.stderr.write('\rkvmlab.cpu: compiled %d/%d functions (%.0f s)   '
                             % (n, total, time.time() - self.t0))
            sys.stderr.flush()
            self.shown = n
        elif n == total or n - self.shown >= max(1, total // 10):
            print('kvmlab.cpu: compiled %d/%d functions (%.0f s)' % (n, total, time.time() - self.t0),
                  file=sys.stderr, flush=True)
            self.shown = n

    def end(self):
        """End the updating line (call after a cold compile)."""
        try:
            if self.done and sys.stderr.isatty():
                sys.stderr.write('\n')
                sys.stderr.flush()
        except (AttributeError, ValueError):
            pass


progress = _Progress()


class CoreDispatcher(CPUDispatcher):
    """numba's CPU dispatcher; calls from other compiled functions are typed without
    literal arguments (one specialisation per function), and compilations are counted."""

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)

    def compile(self, sig):
        misses = sum(self._cache_misses.values())
        entry = super().compile(sig)
        if sum(self._cache_misses.values()) != misses:
            progress.compiled(self)
        return entry


def njit(fn):
    if numba.config.DISABLE_JIT:
        return fn
    opts = dict(nopython=True, nogil=True, _nrt=False, boundscheck=True if _BC else None)
    disp = CoreDispatcher(py_func=fn, locals={}, targetoptions=opts)
    disp.enable_caching()
    DISPATCHERS.append(disp)
    return disp

