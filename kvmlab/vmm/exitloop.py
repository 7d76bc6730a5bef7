"""The exit loop: what a VMM does each time KVM_RUN returns.

:func:`handle_exit` is a pure function of (exit, buses): it dispatches the exit to the
device that owns the port or address and says what to do next (an :class:`Action`).
It never touches the vCPU, so it is tested with synthetic exits.  :func:`drain_ring`
replays the coalesced MMIO/PIO ring on the buses (as writes) and must run *before*
handle_exit after every KVM_RUN, so writes reach devices in the order the guest made
them.

Which exits end a run: HLT (unless ``stop_on_hlt=False``), SHUTDOWN, INTERNAL_ERROR,
FAIL_ENTRY, DEBUG, UNKNOWN, SYSTEM_EVENT and any exit the loop does not know, plus a
device raising :class:`~kvmlab.vmm.bus.StopRun` (the debug-exit port).  IO, MMIO,
INTR and IRQ_WINDOW_OPEN continue.

>>> from kvmlab.vmm.bus import Buses
>>> from kvmlab.vmm.devices import DebugExit
>>> class FakeOut:                        # what kvmlab.exits.IoExit looks like
...     reason, name, direction, is_in, is_out = 2, "IO", 1, False, True
...     port, size, count, data = 0xF4, 1, 1, b"\\x00"
...     def fields(self): return {"direction": 1, "size": 1, "port": 0xF4, "count": 1, "data": "00"}
>>> buses = Buses(); buses.pio.register(0xF4, 4, DebugExit())
>>> handle_exit(FakeOut(), buses)
Action(stop=True, reason='debug_exit', status=0, complete=None, device='debug-exit')
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi import ExitReason
from .bus import Buses, StopRun

#: exit reason -> stop reason, for exits that end the run
STOP_REASONS = {
    ExitReason.HLT: "hlt",
    ExitReason.SHUTDOWN: "shutdown",
    ExitReason.INTERNAL_ERROR: "internal_error",
    ExitReason.FAIL_ENTRY: "fail_entry",
    ExitReason.DEBUG: "debug",
    ExitReason.UNKNOWN: "unknown",
    ExitReason.SYSTEM_EVENT: "system_event",
}
CONTINUE = {ExitReason.IO, ExitReason.MMIO, ExitReason.INTR, ExitReason.IRQ_WINDOW_OPEN}


@dataclass
class Action:
    """What the loop does after an exit: ``stop`` (with ``reason`` and the debug-exit
    ``status``) or continue; ``complete`` is the data an IN / MMIO read gets (pass it to
    ``exit.complete``) and ``device`` the device that handled the access (None: nobody)."""
    stop: bool
    reason: str = "continue"
    status: int | None = None
    complete: bytes | None = None
    device: str | None = None
    record: dict = field(default_factory=dict, repr=False, compare=False)


def exit_name(exit) -> str:
    r = exit.reason
    return getattr(r, "name", None) or (ExitReason(r).name if r in ExitReason._value2member_map_ else str(r))


def exit_record(exit) -> dict:
    """``{"reason": "IO", ...the exit's fields}`` as plain values."""
    rec = {"reason": exit_name(exit)}
    fields = getattr(exit, "fields", None)
    if fields is not None:
        rec.update(fields())
    return rec


def _elements(data: bytes, size: int, count: int) -> list[int]:
    return [int.from_bytes(data[i * size:(i + 1) * size], "little") for i in range(count)]


def handle_exit(exit, buses: Buses, *, stop_on_hlt: bool = True) -> Action:
    """Dispatch one exit to ``buses`` (``.pio`` and ``.mmio``) and decide what happens next.

    * IO OUT: each of the ``count`` elements is a ``write(port, size, value)``;
      IO IN: ``count`` reads, concatenated into ``Action.complete``.
    * MMIO write: ``write(phys_addr, len, value)``; MMIO read: ``Action.complete`` = ``len`` bytes.
    * The record (``Action.record``) is the exit's fields; for IN and MMIO reads its
      ``data`` is what the device returned.
    """
    reason = exit.reason
    rec = exit_record(exit)
    try:
        if reason == ExitReason.IO:
            size, count, port = exit.size, exit.count, exit.port
            if exit.direction == 1:      # OUT
                dev = None
                for v in _elements(exit.data, size, count):
                    dev = buses.pio.write(port, size, v)
                return Action(False, device=dev, record=rec)
            out = b""
            dev = None
            for _ in range(count):
                v, dev = buses.pio.read(port, size)
                out += v.to_bytes(size, "little")
            rec["data"] = out.hex()
            return Action(False, complete=out, device=dev, record=rec)
        if reason == ExitReason.MMIO:
            if exit.is_write:
                dev = buses.mmio.write(exit.phys_addr, exit.len, int.from_bytes(exit.data[:exit.len], "little"))
                return Action(False, device=dev, record=rec)
            v, dev = buses.mmio.read(exit.phys_addr, exit.len)
            out = v.to_bytes(exit.len, "little")
            rec["data"] = out.hex()
            return Action(False, complete=out, device=dev, record=rec)
    except StopRun as stop:
        dev = (buses.pio if reason == ExitReason.IO else buses.mmio).find(
            exit.port if reason == ExitReason.IO else exit.phys_addr)[0]
        return Action(True, stop.reason, stop.status, device=getattr(dev, "name", None), record=rec)
    if reason == ExitReason.HLT and not stop_on_hlt:
        return Action(False, record=rec)
    if reason in CONTINUE:
        return Action(False, record=rec)
    return Action(True, STOP_REASONS.get(reason, "unhandled_" + rec["reason"].lower()), record=rec)


def drain_ring(ring, buses: Buses) -> tuple[list[dict], StopRun | None]:
    """Consume the coalesced ring and replay each entry as a write on its bus (PIO or
    MMIO).  Returns the entries as dicts and the StopRun a device raised, if any (the
    remaining entries are still delivered)."""
    if ring is None:
        return [], None
    entries = ring.drain()
    out = []
    stop = None
    for e in entries:
        bus = buses.pio if e.pio else buses.mmio
        try:
            bus.write(e.phys_addr, e.len, int.from_bytes(e.data[:e.len], "little"))
        except StopRun as s:
            stop = stop or s
        out.append({"phys_addr": e.phys_addr, "len": e.len, "pio": e.pio, "data": bytes(e.data[:e.len]).hex()})
    return out, stop
