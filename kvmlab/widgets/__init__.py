"""kvmlab.widgets: notebook views of a VM, one module per view (ipywidgets + matplotlib).

Every view takes library objects (a Machine, VmFd or VcpuFd), has a deterministic text form
(``str(view)``, also its ``text/plain``: no host addresses, timings or object ids) and a
live mode that keeps it moving while the vCPU runs in a background thread::

    mon = ExitMonitor(machine).live()      # cell 1: display
    handle = machine.start()               # cell 2: run (returns at once)

Views: :class:`PageWalk` (pagewalk), :class:`ExitMonitor` (exits), :class:`MemslotMap`
(memslots), :class:`CoalescedRingView` (ring), :class:`Wiring` (wiring),
:class:`Registers` (registers), :class:`Stepper` (stepper), :class:`SerialConsole`
(console), :class:`VgaScreen` (vga), :class:`KernelInspector` (kernel).
Nothing else in kvmlab imports this package.
"""
from ._base import Live, Throttle, View
from .console import SerialConsole
from .exits import ExitMonitor
from .kernel import KernelInspector
from .memslots import MemslotMap
from .pagewalk import PageWalk
from .registers import Registers
from .ring import CoalescedRingView
from .stepper import Stepper
from .vga import VgaScreen
from .wiring import Wiring

__all__ = ["View", "Live", "Throttle", "ExitMonitor", "KernelInspector", "MemslotMap", "PageWalk",
           "Registers", "CoalescedRingView", "SerialConsole", "Stepper", "VgaScreen", "Wiring"]
