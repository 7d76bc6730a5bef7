"""kvmlab.vmm: a small userspace VMM (a teaching kvmtool) on top of the kvmlab API.

* :class:`Machine` builds a VM (RAM, vCPUs in real/protected/long mode, devices), loads
  a guest and runs the exit loop; :meth:`Machine.run` returns a :class:`RunResult`.
* :mod:`~kvmlab.vmm.bus`: PIO/MMIO buses; devices see offsets.
* :mod:`~kvmlab.vmm.exitloop`: :func:`handle_exit`, a pure function of (exit, buses).
* :mod:`~kvmlab.vmm.modes`: GDT, page tables and KVM_SET_SREGS values per mode.
* :mod:`~kvmlab.vmm.guest`: the ``# kvmlab:`` header of guest files.
* :mod:`~kvmlab.vmm.devices`: serial, debug-exit, debugcon, scratch, VGA text.
"""
from .bus import Bus, Buses, Device, StopRun
from .exitloop import Action, drain_ring, handle_exit
from .guest import GuestError, Header, parse_header
from .machine import Machine, RunResult

__all__ = ["Machine", "RunResult", "Bus", "Buses", "Device", "StopRun", "Action", "handle_exit",
           "drain_ring", "GuestError", "Header", "parse_header"]
