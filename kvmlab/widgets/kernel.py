"""The ``struct kvm`` inspector: the simulated kernel's live view of a VM (``vm.kernel``),
refreshing.  Simulated backend only: on hw struct kvm lives inside the real kernel.

>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", backend="auto")
>>> k = KernelInspector(m)
>>> k.available or str(k).startswith("struct kvm: simulated backend only")
True
>>> m.close()
"""
from __future__ import annotations

import re

from . import html
from ._base import HOST_ADDRESS, View, resolve

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_PID = re.compile(r"\bkvm-\d+\b")      # the stats id names the VMM's process id


def host_free(text: str, slots) -> str:
    """``text`` with host addresses replaced: inside a memslot's backing memory by
    ``<slot N host + 0x...>``, anything else that looks like a host address by ``<host>``;
    and the process id in ``kvm-<pid>`` masked (it differs from run to run).

    >>> from kvmlab.vm import MemorySlot
    >>> host_free("kvm-4242 userspace_addr=0x7f0012340000 at 0x7f00aaaa0000", {0: MemorySlot(0, 0, 0x10000, 0x7f0012340000, 0)})
    'kvm-<pid> userspace_addr=<slot 0 host + 0x0> at <host>'
    """
    spans = [(s.userspace_addr, s.userspace_addr + s.memory_size, s.slot) for s in dict(slots).values()]

    def repl(m):
        v = int(m.group(0), 16)
        for lo, hi, n in spans:
            if lo <= v < hi:
                return f"<slot {n} host + {v - lo:#x}>"
        return m.group(0)
    return _PID.sub("kvm-<pid>", HOST_ADDRESS.sub("<host>", _HEX.sub(repl, text)))


class KernelInspector(View):
    """``str(vm.kernel)`` (struct kvm: memslots, vcpus, buses, irqfds, ioeventfds, the
    coalesced ring, stats ...) without host addresses.  ``KernelInspector(vm_or_machine)``.
    Refreshes about 4 times a second in live mode."""

    max_hz = 4

    def __init__(self, obj):
        machine, vm, _ = resolve(obj)
        super().__init__(machine)
        self.vm = vm
        self.snapshot = ""
        self.poll()

    @property
    def available(self) -> bool:
        try:
            getattr(self.vm, "kernel")
        except (AttributeError, OSError, ImportError):
            return False
        return True

    def poll(self) -> bool:
        if not self.available:
            new = ("struct kvm: simulated backend only (this VM runs on the "
                   f"{self.vm.backend.name!r} backend, where struct kvm lives inside the real kernel; "
                   "use kvmlab.open('sim'))")
        else:
            k = self.vm.kernel
            raw = k.text() if callable(getattr(k, "text", None)) else str(k)
            new = host_free(raw, self.vm.slots)
        changed = new != self.snapshot
        self.snapshot = new
        return changed

    def text(self) -> str:
        return self.snapshot

    def _update(self) -> None:
        self._widget.value = html.pre(self.snapshot)
