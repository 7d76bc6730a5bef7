"""VGA text mode: the 80x25 character buffer at 0xB8000, read from guest RAM.

Each cell is two bytes (character, attribute).  In this VMM the buffer is ordinary RAM,
so guest writes cause no exits; :meth:`VgaText.text` reads the characters back.

>>> import kvmlab
>>> mem = kvmlab.GuestMemory(0x100000)
>>> mem.write(0xB8000, b"H\\x07i\\x07")
>>> vga = VgaText(mem)
>>> vga.lines()[0].rstrip()
'Hi'
>>> len(vga.text().splitlines())
25
"""
from __future__ import annotations

BASE = 0xB8000
COLUMNS = 80
ROWS = 25


class VgaText:
    """Text view of the VGA buffer in ``memory`` (a GuestMemory that maps guest-physical
    ``memory_base``)."""

    name = "vga"

    def __init__(self, memory, base: int = BASE, memory_base: int = 0):
        self.memory = memory
        self.base = base
        self.memory_base = memory_base

    def cells(self) -> bytes:
        off = self.base - self.memory_base
        return self.memory.read(off, COLUMNS * ROWS * 2)

    def lines(self) -> list[str]:
        """25 strings of exactly 80 characters (unprintable bytes as spaces)."""
        raw = self.cells()[0::2]
        chars = "".join(chr(b) if 0x20 <= b < 0x7F else " " for b in raw)
        return [chars[r * COLUMNS:(r + 1) * COLUMNS] for r in range(ROWS)]

    def text(self) -> str:
        """The screen: 25 lines of 80 characters joined by newlines."""
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        used = [ln.rstrip() for ln in self.lines() if ln.strip()]
        return f"<VgaText {len(used)} non-empty lines>"
