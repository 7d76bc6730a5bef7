"""virt/kvm/kvm_main.c (kvm_io_bus_*) + include/kvm/iodev.h: the in-kernel I/O buses.

``struct kvm_io_bus`` is a sorted array of ``(addr, len, device)`` ranges (``len`` is an
``int``, as in the kernel).  A guest access that did not hit RAM is offered to the bus
first: ``kvm_io_bus_get_first_dev`` bsearches the array and the access goes to that range
and the matching ranges after it, exactly like virt/kvm/kvm_main.c (so, like the kernel,
a lookup can miss a matching range when ranges overlap); a device that claims it (its ``write``
or ``read`` returns handled) completes the access inside the kernel, otherwise the access
goes to userspace as KVM_EXIT_IO / KVM_EXIT_MMIO.

Like the kernel, a bus is never modified in place: registering or unregistering a device
builds a new bus and publishes it with one pointer store (``rcu_assign_pointer``), so a
vCPU walking the old bus while another thread registers a device sees either the old or
the new array, never a half-written one.  Writers serialise on ``kvm->slots_lock``.
"""
from __future__ import annotations

import errno

KVM_MMIO_BUS, KVM_PIO_BUS, KVM_VIRTIO_CCW_NOTIFY_BUS, KVM_FAST_MMIO_BUS = 0, 1, 2, 3
KVM_NR_BUSES = 4
BUS_NAMES = ("mmio_bus", "pio_bus", "virtio_ccw_notify_bus", "fast_mmio_bus")
NR_IOBUS_DEVS = 1000


class KvmIoDevice:
    """``struct kvm_io_device``: subclasses implement ``read``/``write`` (``kvm_io_device_ops``).

    ``write(vcpu, addr, length, data: bytes) -> bool`` (True = handled in the kernel);
    ``read(vcpu, addr, length) -> bytes | None`` (None = not mine, go to userspace).
    """
    name = "device"

    def read(self, vcpu, addr, length):
        return None

    def write(self, vcpu, addr, length, data):
        return False


class KvmIoRange:
    __slots__ = ("addr", "len", "dev")

    def __init__(self, addr, length, dev):
        self.addr, self.len, self.dev = addr, length, dev

    def __repr__(self):
        return f"[{self.addr:#x}, +{self.len:#x}) {self.dev.name}"


class KvmIoBus:
    """``struct kvm_io_bus`` (immutable once published)."""
    __slots__ = ("dev_count", "ioeventfd_count", "range")

    def __init__(self, ranges=(), ioeventfd_count=0):
        self.range = tuple(ranges)
        self.dev_count = len(self.range)
        self.ioeventfd_count = ioeventfd_count

    def __repr__(self):
        return f"kvm_io_bus(dev_count={self.dev_count}, ioeventfd_count={self.ioeventfd_count})"


M64 = (1 << 64) - 1


def _int_len(length: int) -> int:
    """The kernel stores a range's length in an ``int``: a 32-bit value >= 2^31 (e.g. a
    coalesced zone of size 0xffffffff) is negative there."""
    length &= 0xFFFFFFFF
    return length - (1 << 32) if length & 0x80000000 else length


def kvm_io_bus_cmp(r1, r2) -> int:
    """``kvm_io_bus_cmp`` with the kernel's arithmetic: ``gpa_t`` (u64, wrapping) addresses
    plus ``int`` lengths.  If ``r2.len`` is 0 only the start addresses are compared (a
    device of length 0 matches its exact address); otherwise r1 "equals" r2 when it starts
    at or after r2 and ends at or before r2's end.  Used both to keep the array sorted
    (r1 = a range already on the bus, r2 = the new one) and to look up (r1 = the access)."""
    addr1, addr2 = r1.addr, r2.addr
    if addr1 < addr2:
        return -1
    if r2.len:
        addr1 = (addr1 + r1.len) & M64
        addr2 = (addr2 + r2.len) & M64
    if addr1 > addr2:
        return 1
    return 0


def _match(r: KvmIoRange, addr: int, length: int) -> bool:
    """``kvm_io_bus_cmp(access, range) == 0``."""
    return kvm_io_bus_cmp(KvmIoRange(addr, length, None), r) == 0


def _bsearch(key, ranges):
    """lib/bsearch.c ``__inline_bsearch`` with ``kvm_io_bus_sort_cmp``: index or -1.  With
    overlapping ranges on the bus it can miss a range that matches (the array is sorted
    by insertion with a comparison that is not a total order for them): so can the kernel."""
    base, num = 0, len(ranges)
    while num > 0:
        pivot = base + (num >> 1)
        result = kvm_io_bus_cmp(key, ranges[pivot])
        if result == 0:
            return pivot
        if result > 0:
            base = pivot + 1
            num -= 1
        num >>= 1
    return -1


def kvm_io_bus_get_first_dev(bus, addr, length) -> int:
    """bsearch, then step back over the matching ranges before the one it found."""
    key = KvmIoRange(addr, length, None)
    off = _bsearch(key, bus.range)
    if off < 0:
        return -1
    while off > 0 and kvm_io_bus_cmp(key, bus.range[off - 1]) == 0:
        off -= 1
    return off


def kvm_io_bus_register_dev(kvm, bus_idx, addr, length, dev, is_ioeventfd=False):
    """Caller holds ``kvm.slots_lock``.  The new range goes before the first range that
    compares greater than it (``kvm_io_bus_cmp(range[i], new) > 0``), as upstream."""
    bus = kvm.buses[bus_idx]
    if bus.dev_count - bus.ioeventfd_count > NR_IOBUS_DEVS - 1:
        raise OSError(errno.ENOSPC, f"the {BUS_NAMES[bus_idx]} already holds {NR_IOBUS_DEVS} "
                      "devices (NR_IOBUS_DEVS); unregister zones or devices you no longer need")
    ranges = list(bus.range)
    new = KvmIoRange(addr & M64, _int_len(length), dev)
    i = 0
    while i < len(ranges) and kvm_io_bus_cmp(ranges[i], new) <= 0:
        i += 1
    ranges.insert(i, new)
    kvm.buses[bus_idx] = KvmIoBus(ranges, bus.ioeventfd_count + (1 if is_ioeventfd else 0))
    kvm.arch.update_devmask()
    kvm.arch.update_coalesced()


def kvm_io_bus_unregister_dev(kvm, bus_idx, dev, is_ioeventfd=False):
    """Caller holds ``kvm.slots_lock``."""
    bus = kvm.buses[bus_idx]
    ranges = [r for r in bus.range if r.dev is not dev]
    if len(ranges) == bus.dev_count:
        return -errno.ENOENT
    kvm.buses[bus_idx] = KvmIoBus(ranges, bus.ioeventfd_count - (1 if is_ioeventfd else 0))
    kvm.arch.update_devmask()
    kvm.arch.update_coalesced()
    return 0


def kvm_io_bus_write(vcpu, bus, addr, length, data) -> bool:
    """``__kvm_io_bus_write``: offer a guest write to the devices on ``bus`` (a published
    ``KvmIoBus``), from the first matching range bsearch finds, in array order."""
    idx = kvm_io_bus_get_first_dev(bus, addr, length)
    if idx < 0:
        return False
    key = KvmIoRange(addr, length, None)
    rng = bus.range
    while idx < len(rng) and kvm_io_bus_cmp(key, rng[idx]) == 0:
        if rng[idx].dev.write(vcpu, addr, length, data):
            return True
        idx += 1
    return False


def kvm_io_bus_read(vcpu, bus, addr, length):
    """``__kvm_io_bus_read``."""
    idx = kvm_io_bus_get_first_dev(bus, addr, length)
    if idx < 0:
        return None
    key = KvmIoRange(addr, length, None)
    rng = bus.range
    while idx < len(rng) and kvm_io_bus_cmp(key, rng[idx]) == 0:
        val = rng[idx].dev.read(vcpu, addr, length)
        if val is not None:
            return val
        idx += 1
    return None
