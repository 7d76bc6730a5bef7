"""The VGA text screen (80x25 characters at guest-physical 0xB8000, ordinary guest RAM,
so the guest writes it without any exit: a live view has to poll it).

>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", backend="auto")
>>> m.write_phys(0xB8000, b"H\\x1fi\\x1f")
>>> print("\\n".join(str(VgaScreen(m)).splitlines()[:3]))
VGA text 80x25 at 0xb8000
+--------------------------------------------------------------------------------+
|Hi                                                                              |
>>> m.close()
"""
from __future__ import annotations

from . import html
from ._base import View, resolve

# the 16 VGA text colours
PALETTE = ("#000000", "#0000aa", "#00aa00", "#00aaaa", "#aa0000", "#aa00aa", "#aa5500", "#aaaaaa",
           "#555555", "#5555ff", "#55ff55", "#55ffff", "#ff5555", "#ff55ff", "#ffff55", "#ffffff")


class VgaScreen(View):
    """The Machine's VGA text buffer.  ``VgaScreen(machine)``."""

    def __init__(self, machine):
        m, _, _ = resolve(machine)
        if m is None:
            raise TypeError("VgaScreen needs a Machine (it reads the VGA buffer the Machine maps)")
        super().__init__(m)
        self.cells = b""
        self.poll()

    def poll(self) -> bool:
        vga = self.machine.vga
        cells = vga.cells() if vga is not None else b""
        if cells != self.cells:
            self.cells = cells
            return True
        return False

    def lines(self) -> list[str]:
        from ..vmm.devices.vga import COLUMNS, ROWS
        chars = "".join(chr(b) if 0x20 <= b < 0x7F else " " for b in self.cells[0::2])
        return [chars[r * COLUMNS:(r + 1) * COLUMNS] for r in range(ROWS)] if chars else []

    def text(self) -> str:
        if self.machine.vga is None:
            return "VGA text: none (guest RAM ends below 0xb8fa0; give the Machine more memory)"
        border = "+" + "-" * 80 + "+"
        return "\n".join(["VGA text 80x25 at 0xb8000", border] + [f"|{ln}|" for ln in self.lines()] + [border])

    def _update(self) -> None:
        if not self.cells:
            self._widget.value = html.pre(self.text())
            return
        out = []
        for r in range(25):
            row = []
            for c in range(80):
                ch, attr = self.cells[2 * (80 * r + c)], self.cells[2 * (80 * r + c) + 1]
                glyph = html.esc(chr(ch)) if 0x20 <= ch < 0x7F else " "
                row.append(f'<span style="color:{PALETTE[attr & 15]};background:{PALETTE[attr >> 4 & 7]}">{glyph}</span>')
            out.append("".join(row))
        self._widget.value = (f'<pre style="{html.STYLE}; background:#000; display:inline-block; '
                              f'padding:4px">' + "\n".join(out) + "</pre>")
