"""Bochs/QEMU debug console (port 0xE9): every byte written is printed.

Reading the port returns 0xE9, which is how guests detect it.

>>> from kvmlab.vmm.devices import Console
>>> con = DebugCon(Console())
>>> for ch in b"hey": con.write(0, 1, ch)
>>> con.text, hex(con.read(0, 1))
('hey', '0xe9')
"""
from __future__ import annotations

from ..bus import Device
from .console import Console

PORT = 0xE9


class DebugCon(Device):
    name = "debugcon"

    def __init__(self, console: Console | None = None, name: str | None = None):
        super().__init__(name)
        self.console = console if console is not None else Console()
        self.output = bytearray()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def read(self, offset: int, size: int) -> int:
        return 0xE9

    def write(self, offset: int, size: int, value: int) -> None:
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")[:1]
        self.output += data
        self.console.put(data, self.name)
