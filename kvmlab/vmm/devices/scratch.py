"""A scratch device: plain storage behind PIO or MMIO, for guests that test I/O exits.

What a guest writes is stored (little endian); reads return it.  Offset 0 of a fresh
device reads back what was written last, so a guest can check an MMIO read completed
with the right value.  The Machine maps one at MMIO 0xD0000000 (4 KiB) and one at
ports 0x510-0x51F.

>>> s = Scratch(16)
>>> s.write(4, 2, 0xBEEF)
>>> hex(s.read(4, 2)), hex(s.read(4, 4))
('0xbeef', '0xbeef')
"""
from __future__ import annotations

from ..bus import Device

MMIO_BASE = 0xD000_0000
MMIO_SIZE = 0x1000
PIO_BASE = 0x510
PIO_SIZE = 0x10


class Scratch(Device):
    name = "scratch"

    def __init__(self, size: int, name: str | None = None):
        super().__init__(name)
        self.data = bytearray(size)
        self.reads = 0
        self.writes = 0

    def read(self, offset: int, size: int) -> int:
        self.reads += 1
        chunk = bytes(self.data[offset:offset + size]).ljust(size, b"\xff")
        return int.from_bytes(chunk, "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes += 1
        n = max(0, min(size, len(self.data) - offset))
        self.data[offset:offset + n] = value.to_bytes(size, "little")[:n]
