"""virt/kvm/coalesced_mmio.c: batch guest writes into a ring instead of exiting.

Each registered zone is one ``kvm_coalesced_mmio_dev`` on the MMIO bus (``pio=0``) or the
PIO bus (``pio=1``).  A guest *write* that lies completely inside a zone is appended to the
VM's ring (page 2 of every vCPU's mmap) and the guest continues without an exit.  The
kernel only ever advances ``last``; userspace consumes from ``first``.  The ring has 170
slots of which 169 are usable (``(last + 1) % 170 == first`` means full); a write that
finds the ring full is not dropped: it goes to userspace as an ordinary exit.

The CPU core appends to the same ring by itself for speed (it gets the zone list and the
ring page through ``PhysMap.set_coalesced``), but only for zones where that gives the same
answer as the kernel's io bus lookup (:func:`core_zones`): a zone that overlaps another
range on its bus (the bus's bsearch may miss it), one whose ``int`` length is negative or
one that reaches 2^63 is left to this module, which serves the writes that reach the
kernel's io bus and follows the kernel code below.
"""
from __future__ import annotations

import errno
import struct

import numpy as np

from .iobus import M64, KVM_MMIO_BUS, KVM_PIO_BUS, KvmIoDevice, kvm_io_bus_register_dev, \
    kvm_io_bus_unregister_dev

KVM_COALESCED_MMIO_MAX = (4096 - 8) // 24   # 170
ENTRY_SIZE = 24


def coalesced_mmio_in_range(zone_addr, zone_size, addr, length) -> bool:
    """Upstream's check with its types: ``gpa_t`` (u64, wrapping) addresses, an ``int``
    length (a size >= 2^31 passed as ``len`` is negative) and the zone's ``__u32`` size."""
    length &= 0xFFFFFFFF
    if length & 0x80000000:
        return False                                  # len < 0
    end = (addr + length) & M64
    if end < addr:
        return False
    if addr < zone_addr:
        return False
    return end <= (zone_addr + zone_size) & M64


class KvmCoalescedMmioDev(KvmIoDevice):
    """``struct kvm_coalesced_mmio_dev``."""
    __slots__ = ("kvm", "addr", "size", "pio")

    def __init__(self, kvm, addr, size, pio):
        self.kvm, self.addr, self.size, self.pio = kvm, addr, size, pio

    @property
    def name(self):
        return "coalesced_pio" if self.pio else "coalesced_mmio"

    def write(self, vcpu, addr, length, data):
        if not coalesced_mmio_in_range(self.addr, self.size, addr, length):
            return False
        return coalesced_ring_append(self.kvm, addr, length, data, self.pio)

    def __repr__(self):
        return (f"kvm_coalesced_mmio_zone(addr={self.addr:#x}, size={self.size:#x}, "
                f"pio={self.pio})")


def coalesced_ring_append(kvm, addr, length, data, pio) -> bool:
    """Append one entry under ``kvm->ring_lock``; False if the ring is full."""
    ring = kvm.coalesced_mmio_ring       # numpy uint8 view of the ring page
    with kvm.ring_lock:
        words = ring[:8].view(np.uint32)
        first, insert = int(words[0]), int(words[1])
        if insert >= KVM_COALESCED_MMIO_MAX or (insert + 1) % KVM_COALESCED_MMIO_MAX == first:
            return False
        off = 8 + insert * ENTRY_SIZE
        struct.pack_into("<QII", ring, off, addr, length, pio)
        ring[off + 16:off + 16 + length] = np.frombuffer(bytes(data[:length]), np.uint8)
        words[1] = (insert + 1) % KVM_COALESCED_MMIO_MAX
    return True


def kvm_vm_ioctl_register_coalesced_mmio(kvm, addr, size, pio):
    if pio not in (0, 1):
        raise OSError(errno.EINVAL, f"kvm_coalesced_mmio_zone.pio must be 0 (MMIO) or 1 (PIO), "
                                    f"not {pio}")
    dev = KvmCoalescedMmioDev(kvm, addr, size, pio)
    with kvm.slots_lock:
        kvm_io_bus_register_dev(kvm, KVM_PIO_BUS if pio else KVM_MMIO_BUS, addr, size, dev)
        kvm.coalesced_zones.append(dev)
        kvm.arch.update_coalesced()
    return 0


def kvm_vm_ioctl_unregister_coalesced_mmio(kvm, addr, size, pio):
    """Removes every zone of the same kind that *contains* ``[addr, addr+size)`` (the
    kernel calls ``coalesced_mmio_in_range(dev, zone->addr, zone->size)``); returns 0 even
    when nothing matched."""
    if pio not in (0, 1):
        raise OSError(errno.EINVAL, f"kvm_coalesced_mmio_zone.pio must be 0 (MMIO) or 1 (PIO), "
                                    f"not {pio}")
    with kvm.slots_lock:
        for dev in list(kvm.coalesced_zones):
            if dev.pio == pio and coalesced_mmio_in_range(dev.addr, dev.size, addr, size):
                kvm_io_bus_unregister_dev(kvm, KVM_PIO_BUS if pio else KVM_MMIO_BUS, dev)
                kvm.coalesced_zones.remove(dev)
        kvm.arch.update_coalesced()
    return 0


def core_zones(kvm, limit):
    """The zones the CPU core may coalesce by itself, as ``(addr, size, pio)``: those for
    which "the write lies in the zone" is exactly what the kernel's io bus decides, i.e.
    1 <= size < 2^31 (the bus's ``int`` length is positive), addr + size < 2^63 (the core
    compares signed 64-bit numbers) and no other range on the same bus overlaps it (then
    the bus's bsearch cannot miss it and no other device comes first).  With an in-kernel
    LAPIC, an MMIO zone over the APIC page is left to the kernel too (the LAPIC sees MMIO
    before the bus).  Writes to the other zones exit the core and go through the io bus."""
    from .iobus import KVM_MMIO_BUS, KVM_PIO_BUS
    out = []
    apic = kvm.arch.irqchip_in_kernel()
    for d in kvm.coalesced_zones:
        if len(out) >= limit:
            break
        a, n = d.addr, d.size
        if not (0 < n < 1 << 31) or a + n >= 1 << 63:
            continue
        if apic and not d.pio and a < 0xFEE00000 + 0x1000 and 0xFEE00000 < a + n:
            continue
        ok = True
        for r in kvm.buses[KVM_PIO_BUS if d.pio else KVM_MMIO_BUS].range:
            if r.dev is d:
                continue
            if r.len < 0:
                ok = False                         # wraps or ends below its start: be safe
                break
            end = r.addr + max(r.len, 1)
            if r.addr < a + n and a < end:
                ok = False
                break
        if ok:
            out.append((a, n, d.pio))
    return out
