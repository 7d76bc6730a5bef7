"""Guest RAM: host memory owned by userspace, as on real KVM.

A :class:`GuestMemory` is an anonymous private mmap (page aligned, zero filled), usable as
a numpy ``uint8`` array.  Its host address is what goes into a memslot's
``userspace_addr``; what the guest writes is visible in the array at once, in both
backends.
"""
from __future__ import annotations

import mmap

import numpy as np

from . import hostmem

PAGE_SIZE = 4096


class GuestMemory:
    """Page-aligned host memory for a guest, seen as a numpy uint8 array.

    >>> mem = GuestMemory(0x2000)
    >>> mem.size, mem.address % 4096
    (8192, 0)
    >>> mem[0x10:0x13] = b"abc"
    >>> bytes(mem[0x10:0x13])
    b'abc'
    >>> mem.read(0x10, 3)
    b'abc'
    >>> mem.close()
    """

    def __init__(self, size: int):
        if not isinstance(size, int) or size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"GuestMemory size must be a positive multiple of {PAGE_SIZE} bytes, got {size!r}")
        self.size = size
        self._mmap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.array = np.frombuffer(self._mmap, dtype=np.uint8)
        self.address = hostmem.register(self.array)

    # numpy-like access --------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        return self.array[key]

    def __setitem__(self, key, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = np.frombuffer(bytes(value), dtype=np.uint8)
        self.array[key] = value

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` of this memory."""
        self._check(offset, length)
        return self.array[offset:offset + length].tobytes()

    def write(self, offset: int, data: bytes) -> None:
        """Copy ``data`` into this memory at ``offset``."""
        self._check(offset, len(data))
        self.array[offset:offset + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)

    def view(self, dtype, offset: int = 0, count: int = -1) -> np.ndarray:
        """A typed numpy view (e.g. ``np.uint64`` for page-table entries) starting at ``offset``."""
        return np.frombuffer(self._mmap, dtype=dtype, count=count, offset=offset)

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise IndexError(f"range {offset:#x}+{length:#x} is outside this {self.size:#x}-byte GuestMemory")

    def close(self) -> None:
        """Unregister the memory.  The mapping itself is freed when nothing refers to it."""
        hostmem.unregister(self.address)

    def __repr__(self) -> str:
        return f"GuestMemory(size={self.size:#x})"
