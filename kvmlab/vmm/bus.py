"""The VMM's I/O buses: which device answers a port (PIO bus) or a physical address (MMIO bus).

KVM hands userspace every port or MMIO access it did not handle in the kernel; the VMM
looks the address up on its own bus and calls the device.  Devices see *offsets* into
the range they were registered for, and values as little-endian integers::

    read(offset, size) -> int          # size is 1, 2, 4 or 8 bytes
    write(offset, size, value) -> None

An access nobody registered for behaves like an empty ISA bus: reads return all ones,
writes are dropped.

>>> bus = Bus("pio")
>>> class Echo(Device):
...     def read(self, offset, size): return 0x40 + offset
>>> bus.register(0x500, 8, Echo("echo"))
>>> bus.read(0x503, 1)
(67, 'echo')
>>> bus.read(0x600, 2)
(65535, None)
"""
from __future__ import annotations

from dataclasses import dataclass, field


class StopRun(Exception):
    """Raised by a device to end the run (the debug-exit port does this)."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(f"{reason} (status {status})")
        self.reason = reason
        self.status = status


class Device:
    """Base class for devices: reads return all ones, writes are ignored.  ``name`` shows
    up in traces."""

    name = "device"

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@dataclass(frozen=True)
class Mapping:
    """One registration on a bus: ``[base, base + length)`` -> ``device``."""
    base: int
    length: int
    device: object

    @property
    def end(self) -> int:
        return self.base + self.length

    def __repr__(self) -> str:
        return f"{self.base:#x}-{self.end - 1:#x}: {getattr(self.device, 'name', self.device)!r}"


class Bus:
    """An address space of devices (``"pio"`` ports or ``"mmio"`` physical addresses)."""

    def __init__(self, kind: str = "pio"):
        self.kind = kind
        self.mappings: list[Mapping] = []

    def register(self, base: int, length: int, device) -> None:
        """Give ``device`` the range ``[base, base + length)``; ranges may not overlap."""
        if length <= 0:
            raise ValueError(f"a {self.kind} range needs a positive length, got {length}")
        for m in self.mappings:
            if base < m.end and m.base < base + length:
                raise ValueError(f"{self.kind} range {base:#x}-{base + length - 1:#x} overlaps {m!r}")
        self.mappings.append(Mapping(base, length, device))
        self.mappings.sort(key=lambda m: m.base)

    def unregister(self, device) -> None:
        """Remove every range of ``device``."""
        self.mappings = [m for m in self.mappings if m.device is not device]

    def find(self, addr: int):
        """``(device, offset)`` for ``addr``, or ``(None, None)``."""
        for m in self.mappings:
            if m.base <= addr < m.end:
                return m.device, addr - m.base
        return None, None

    def read(self, addr: int, size: int) -> tuple[int, str | None]:
        """Read ``size`` bytes at ``addr``: ``(value, device name or None)``."""
        dev, off = self.find(addr)
        if dev is None:
            return (1 << (8 * size)) - 1, None
        mask = (1 << (8 * size)) - 1
        return int(dev.read(off, size)) & mask, getattr(dev, "name", None)

    def write(self, addr: int, size: int, value: int) -> str | None:
        """Write ``value`` (``size`` bytes) at ``addr``; returns the device name or None.
        A device may raise :class:`StopRun` to end the run."""
        dev, off = self.find(addr)
        if dev is None:
            return None
        dev.write(off, size, value & ((1 << (8 * size)) - 1))
        return getattr(dev, "name", None)

    def __repr__(self) -> str:
        return f"<Bus {self.kind}: {', '.join(map(repr, self.mappings)) or 'empty'}>"


@dataclass
class Buses:
    """The two buses a VMM dispatches exits to."""
    pio: Bus = field(default_factory=lambda: Bus("pio"))
    mmio: Bus = field(default_factory=lambda: Bus("mmio"))
