"""The one decorator of the core: ``@njit(cache=True, nogil=True)``, with bounds checking
switched on by ``KVMLAB_BOUNDSCHECK=1`` (or numba's own ``NUMBA_BOUNDSCHECK=1``).
The core never allocates, so it is compiled without the NRT (no reference counting of the
state arrays on every call).  ``njit_inline`` is the same with numba's ``inline='always'``:
only for a few tiny helpers of the fast path's hot loop (each use adds compile time)."""
import os

from . import cachedir  # noqa: F401  (installs the cache locator before any compilation)
import numba

_BC = os.environ.get('KVMLAB_BOUNDSCHECK', os.environ.get('NUMBA_BOUNDSCHECK', '')) == '1'


def njit(fn):
    if _BC:
        return numba.njit(cache=True, nogil=True, boundscheck=True, _nrt=False)(fn)
    return numba.njit(cache=True, nogil=True, _nrt=False)(fn)


def njit_inline(fn):
    if _BC:
        return numba.njit(cache=True, nogil=True, boundscheck=True, _nrt=False, inline='always')(fn)
    return numba.njit(cache=True, nogil=True, _nrt=False, inline='always')(fn)
