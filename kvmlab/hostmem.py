"""The host process's address space, as far as KVM can see it.

On real KVM a memslot's ``userspace_addr`` or a ``dirty_bitmap`` pointer is just a host
virtual address, and the kernel reaches it with ``copy_to_user``/``get_user_pages``.  The
simulated kernel has no MMU to do that, so every buffer that kvmlab hands to KVM by
address is registered here: a host address range -> a numpy ``uint8`` view of it.  The
simulator resolves addresses only through :func:`lookup`, so it can never touch memory
outside a registered mapping (it answers EFAULT, as the kernel would).

This module is a leaf: it imports only numpy and the standard library, so both the API
layer and ``kvmlab.sim`` can use it.
"""
from __future__ import annotations

import bisect
import ctypes
import threading

import numpy as np

_lock = threading.Lock()
_starts: list[int] = []          # sorted start addresses
_maps: dict[int, np.ndarray] = {}  # start -> uint8 view covering the whole mapping


def address_of(buf) -> int:
    """Host address of the first byte of a writable buffer (numpy array, mmap, bytearray)."""
    if isinstance(buf, np.ndarray):
        return int(buf.ctypes.data)
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def register(view: np.ndarray) -> int:
    """Make ``view`` (a contiguous uint8 array) reachable by its host address; returns it."""
    if view.dtype != np.uint8 or view.ndim != 1 or not view.flags.c_contiguous:
        raise ValueError("hostmem.register needs a 1-D contiguous uint8 array")
    start = address_of(view)
    with _lock:
        if start not in _maps:
            bisect.insort(_starts, start)
        _maps[start] = view
    return start


def unregister(start: int) -> None:
    """Forget the mapping that starts at ``start`` (no error if it is not registered)."""
    with _lock:
        if _maps.pop(start, None) is not None:
            _starts.remove(start)


def lookup(addr: int, size: int) -> np.ndarray | None:
    """A uint8 view of ``[addr, addr+size)`` if that whole range lies in one registered
    mapping, else None (the kernel would fail the access with EFAULT)."""
    if size < 0 or addr < 0:
        return None
    with _lock:
        i = bisect.bisect_right(_starts, addr) - 1
        if i < 0:
            return None
        start = _starts[i]
        view = _maps[start]
    off = addr - start
    if off + size > view.size:
        return None
    return view[off:off + size]
