"""Exits: ``struct kvm_run`` after KVM_RUN, decoded into one object per exit reason.

One decoder serves both backends, because in both the vCPU fd's mmap *is* the kvm_run
page (page 0), followed by the PIO data page (page 1).  An exit object reads the page at
the moment it is made; it stays valid until the next ``run()``.  For ``IN`` and MMIO
reads, :meth:`IoExit.complete` / :meth:`MmioExit.complete` write the value into the page,
and KVM finishes the instruction on the next ``run()``.

Decoding is a pure function of the page bytes, so it is tested with synthetic pages.
"""
from __future__ import annotations

import struct

from .uapi import ExitReason

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

_REASONS = {int(r): r for r in ExitReason}   # int -> ExitReason member, without IntEnum's slow call

_IO = struct.Struct("<BBHIQ")        # direction, size, port, count, data_offset  @32
_MMIO = struct.Struct("<Q8sIB")      # phys_addr, data[8], len, is_write           @32
_DEBUG = struct.Struct("<IIQQQ")     # exception, pad, pc, dr6, dr7                @32
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Exit:
    """A KVM exit.  ``reason`` is a :class:`kvmlab.ExitReason` (an IntEnum, so it compares
    equal to ``kvmlab.KVM_EXIT_*``)."""

    __slots__ = ("reason", "_page")
    _fields: tuple[str, ...] = ()

    def __init__(self, reason: int, page):
        self.reason = _REASONS.get(reason, reason)
        self._page = page

    @property
    def name(self) -> str:
        return getattr(self.reason, "name", str(self.reason))

    def fields(self) -> dict:
        """The exit's fields as plain Python values (used by ``--json`` and the widgets)."""
        out = {}
        for f in self._fields:
            v = getattr(self, f)
            out[f] = v.hex() if isinstance(v, (bytes, bytearray)) else v
        return out

    def __repr__(self) -> str:
        parts = []
        for k, v in self.fields().items():
            parts.append(f"{k}={v:#x}" if isinstance(v, int) and not isinstance(v, bool) and k not in ("size", "len", "count", "ndata", "cpu", "is_write", "direction", "suberror", "type", "exception") else f"{k}={v!r}")
        return f"<{self.name} {' '.join(parts)}>" if parts else f"<{self.name}>"


class IoExit(Exit):
    """KVM_EXIT_IO: port I/O that the kernel did not handle.  ``direction`` is
    ``KVM_EXIT_IO_IN`` (0) or ``KVM_EXIT_IO_OUT`` (1); ``count`` elements of ``size``
    bytes sit in the PIO data page at ``data_offset`` (string I/O moves several)."""

    __slots__ = ("direction", "size", "port", "count", "data_offset")
    _fields = ("direction", "size", "port", "count", "data")

    def __init__(self, reason, page):
        self.reason = _REASONS[reason]
        self._page = page
        self.direction, self.size, self.port, self.count, self.data_offset = _IO.unpack_from(page, 32)

    @property
    def is_in(self) -> bool:
        return self.direction == KVM_EXIT_IO_IN

    @property
    def is_out(self) -> bool:
        return self.direction == KVM_EXIT_IO_OUT

    @property
    def data(self) -> bytes:
        """The ``count * size`` bytes in the PIO data page (what an OUT wrote)."""
        o = self.data_offset
        return bytes(self._page[o:o + self.count * self.size])

    @property
    def value(self) -> int:
        """The first element as an integer (little endian)."""
        o = self.data_offset
        return int.from_bytes(self._page[o:o + self.size], "little")

    def complete(self, value) -> None:
        """Supply what an IN reads: an int (every element gets it) or ``count*size`` bytes."""
        if not self.is_in:
            raise ValueError("only an IN exit takes a value; an OUT completes by itself on the next run()")
        n = self.count * self.size
        if isinstance(value, int):
            data = value.to_bytes(self.size, "little", signed=value < 0) * self.count
        else:
            data = bytes(value)
            if len(data) != n:
                raise ValueError(f"this IN reads {self.count} x {self.size} bytes = {n} bytes, got {len(data)}")
        self._page[self.data_offset:self.data_offset + n] = data

    def __repr__(self) -> str:
        d = "OUT" if self.is_out else "IN"
        s = f"<IO {d} port={self.port:#x} size={self.size} count={self.count}"
        return s + (f" data={self.data.hex()}>" if self.is_out else ">")


class MmioExit(Exit):
    """KVM_EXIT_MMIO: a guest access to a physical address with no memslot (or a write to
    a READONLY slot) that no in-kernel device took.  ``data[:len]`` is what a write wrote."""

    __slots__ = ("phys_addr", "_raw", "len", "is_write")
    _fields = ("phys_addr", "len", "is_write", "data")

    def __init__(self, reason, page):
        self.reason = _REASONS[reason]
        self._page = page
        self.phys_addr, self._raw, self.len, w = _MMIO.unpack_from(page, 32)
        self.is_write = bool(w)

    @property
    def data(self) -> bytes:
        return self._raw[:self.len]

    @property
    def value(self) -> int:
        return int.from_bytes(self._raw[:self.len], "little")

    def complete(self, value) -> None:
        """Supply what an MMIO read returns: an int or ``len`` bytes."""
        if self.is_write:
            raise ValueError("only an MMIO read takes a value; a write completes by itself on the next run()")
        data = value.to_bytes(self.len, "little", signed=value < 0) if isinstance(value, int) else bytes(value)
        if len(data) != self.len:
            raise ValueError(f"this MMIO read is {self.len} bytes, got {len(data)}")
        self._page[40:40 + self.len] = data

    def __repr__(self) -> str:
        if self.is_write:
            return f"<MMIO write phys_addr={self.phys_addr:#x} len={self.len} data={self.data.hex()}>"
        return f"<MMIO read phys_addr={self.phys_addr:#x} len={self.len}>"


class DebugExit(Exit):
    """KVM_EXIT_DEBUG: a guest-debug event (single-step, breakpoint, watchpoint)."""

    __slots__ = ("exception", "pc", "dr6", "dr7")
    _fields = ("exception", "pc", "dr6", "dr7")

    def __init__(self, reason, page):
        Exit.__init__(self, reason, page)
        self.exception, _, self.pc, self.dr6, self.dr7 = _DEBUG.unpack_from(page, 32)


class InternalErrorExit(Exit):
    """KVM_EXIT_INTERNAL_ERROR: KVM could not go on.  Suberror 1 (EMULATION) carries the
    instruction bytes when flags bit 0 is set."""

    __slots__ = ("suberror", "ndata", "data")
    _fields = ("suberror", "ndata", "data", "insn_bytes")

    def __init__(self, reason, page):
        Exit.__init__(self, reason, page)
        self.suberror, self.ndata = struct.unpack_from("<II", page, 32)
        n = min(self.ndata, 16)
        self.data = list(struct.unpack_from(f"<{n}Q", page, 40))

    @property
    def insn_bytes(self) -> bytes:
        """The instruction bytes KVM could not emulate (suberror 1 with the bytes flag), else b''."""
        if self.suberror == 1 and self.ndata >= 3 and self.data and self.data[0] & 1:
            size = self._page[48]
            return bytes(self._page[49:49 + min(size, 15)])
        return b""


class FailEntryExit(Exit):
    """KVM_EXIT_FAIL_ENTRY: the hardware refused VM entry (VMX: exit reason with bit 31 set;
    SVM: VMEXIT_INVALID)."""

    __slots__ = ("hardware_entry_failure_reason", "cpu", "explanation")
    _fields = ("hardware_entry_failure_reason", "cpu", "explanation")

    def __init__(self, reason, page):
        Exit.__init__(self, reason, page)
        self.hardware_entry_failure_reason, self.cpu = struct.unpack_from("<QI", page, 32)
        #: which VM-entry rule the state broke, as a sentence (simulated backend only, else None)
        self.explanation = None


class UnknownExit(Exit):
    """KVM_EXIT_UNKNOWN: ``hardware_exit_reason`` is the vendor exit code KVM did not handle."""

    __slots__ = ("hardware_exit_reason",)
    _fields = ("hardware_exit_reason",)

    def __init__(self, reason, page):
        Exit.__init__(self, reason, page)
        self.hardware_exit_reason = _U64.unpack_from(page, 32)[0]


class SystemEventExit(Exit):
    """KVM_EXIT_SYSTEM_EVENT: ``type`` 1 SHUTDOWN, 2 RESET, 3 CRASH, ..."""

    __slots__ = ("type", "ndata", "data")
    _fields = ("type", "ndata", "data")

    def __init__(self, reason, page):
        Exit.__init__(self, reason, page)
        self.type, self.ndata = struct.unpack_from("<II", page, 32)
        self.data = list(struct.unpack_from(f"<{min(self.ndata, 16)}Q", page, 40))


_DECODERS = {
    2: IoExit,
    6: MmioExit,
    4: DebugExit,
    17: InternalErrorExit,
    9: FailEntryExit,
    0: UnknownExit,
    24: SystemEventExit,
}


def decode(page) -> Exit:
    """Decode the exit in a kvm_run page (any buffer of at least 2352 bytes, plus the PIO
    page behind it for IO exits)."""
    reason = _U32.unpack_from(page, 8)[0]
    return _DECODERS.get(reason, Exit)(reason, page)


def intr(page) -> Exit:
    """The exit for a KVM_RUN that returned EINTR (a signal, a kick, or immediate_exit)."""
    return Exit(10, page)
