"""A 16550 UART (COM1 at ports 0x3F8-0x3FF): enough for polling drivers such as Linux's
early console.

Registers (offset from the base port; DLAB = bit 7 of LCR):

==  ==========================  =================================================
0   RBR (read) / THR (write)    DLL when DLAB=1.  A THR write prints a character.
1   IER                          DLM when DLAB=1
2   IIR (read) / FCR (write)    IIR reads 0x01 (no interrupt pending; FIFOs off)
3   LCR
4   MCR
5   LSR (read)                  THRE|TEMT (0x60) always: the transmitter is never busy;
                                DR (0x01) while input bytes are queued
6   MSR (read)                  0xB0: DCD, DSR, CTS
7   SCR                          scratch register (read/write)
==  ==========================  =================================================

>>> from kvmlab.vmm.devices import Console
>>> uart = Serial16550(Console())
>>> hex(uart.read(5, 1))
'0x60'
>>> for ch in b"ok": uart.write(0, 1, ch)
>>> uart.text
'ok'
"""
from __future__ import annotations

from ..bus import Device
from .console import Console

COM1 = 0x3F8

LSR_DR = 0x01
LSR_THRE = 0x20
LSR_TEMT = 0x40
LCR_DLAB = 0x80


class Serial16550(Device):
    """16550 UART; output goes to ``console`` (and to ``self.output``)."""

    name = "serial"

    def __init__(self, console: Console | None = None, name: str | None = None):
        super().__init__(name)
        self.console = console if console is not None else Console()
        self.output = bytearray()
        self.input = bytearray()
        self.ier = self.lcr = self.mcr = self.scr = 0
        self.dll, self.dlm = 0x0C, 0       # 9600 baud
        self.fcr = 0

    def feed(self, data: bytes) -> None:
        """Queue bytes for the guest to read from RBR (LSR.DR is set while any are queued)."""
        self.input += data

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == 0:
            if dlab:
                return self.dll
            return self.input.pop(0) if self.input else 0
        if offset == 1:
            return self.dlm if dlab else self.ier
        if offset == 2:
            return 0x01
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.input else 0)
        if offset == 6:
            return 0xB0
        if offset == 7:
            return self.scr
        return 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == 0:
            if dlab:
                self.dll = value
            else:
                self.output.append(value)
                self.console.put(bytes([value]), self.name)
        elif offset == 1:
            if dlab:
                self.dlm = value
            else:
                self.ier = value & 0x0F
        elif offset == 2:
            self.fcr = value
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            self.mcr = value & 0x1F
        elif offset == 7:
            self.scr = value
