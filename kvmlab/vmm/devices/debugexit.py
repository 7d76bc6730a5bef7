"""The debug-exit port (0xF4): a guest writes a status code and the run ends with it.

Status 0 means success; any other value is the guest's failure code.  (QEMU's
``isa-debug-exit`` turns value v into process status ``(v << 1) | 1``; kvmlab keeps v.)

>>> from kvmlab.vmm.bus import StopRun
>>> try:
...     DebugExit().write(0, 1, 0)
... except StopRun as stop:
...     print(stop.reason, stop.status)
debug_exit 0
"""
from __future__ import annotations

from ..bus import Device, StopRun

PORT = 0xF4


class DebugExit(Device):
    """Any write ends the run with ``status`` = the value written (1, 2 or 4 bytes)."""

    name = "debug-exit"

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self.status: int | None = None

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        self.status = value
        raise StopRun("debug_exit", value)
