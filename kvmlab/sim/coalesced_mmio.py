"""virt/kvm/coalesced_mmio.c: batch guest writes into a ring instead of exiting.

Each registered zone is one ``kvm_coalesced_mmio_dev`` on the MMIO bus (``pio=0``) or the
PIO bus (``pio=1``).  A guest *write* that lies completely inside a zone is appended to the
VM's ring (page 2 of every vCPU's mmap) and the guest continues without an exit.  The
kernel only ever advances ``last``; userspace consumes from ``first``.  The ring has 170
slots of which 169 are usable (``(last + 1) % 170 == first`` means full); a write that
finds the ring full is not dropped: it goes to userspace as an ordinary exit.

The CPU core appends to the same ring by itself for speed (it gets the zone list and the
ring page through ``PhysMap.set_coalesced``); this module is the reference implementation
used for writes that reach the kernel's io bus, and both follow the code below.
"""
from __future__ import annotations

import errno
import struct

import numpy as np

from .iobus import KVM_MMIO_BUS, KVM_PIO_BUS, KvmIoDevice, kvm_io_bus_register_dev, \
    kvm_io_bus_unregister_dev

KVM_COALESCED_MMIO_MAX = (4096 - 8) // 24   # 170
ENTRY_SIZE = 24


def coalesced_mmio_in_range(zone_addr, zone_size, addr, length) -> bool:
    if length < 0 or addr + length < addr:
        return False
    if addr < zone_addr:
        return False
    return addr + length <= zone_addr + zone_size


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
