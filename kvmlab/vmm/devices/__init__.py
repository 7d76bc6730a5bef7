"""Devices of the kvmlab VMM.  Each sees offsets into its own range (see :mod:`kvmlab.vmm.bus`)."""
from .console import Console
from .serial import Serial16550
from .debugexit import DebugExit
from .debugcon import DebugCon
from .scratch import Scratch
from .vga import VgaText

__all__ = ["Console", "Serial16550", "DebugExit", "DebugCon", "Scratch", "VgaText"]
