"""virt/kvm/kvm_main.c (kvm_io_bus_*) + include/kvm/iodev.h: the in-kernel I/O buses.

``struct kvm_io_bus`` is a sorted array of ``(addr, len, device)`` ranges.  A guest access
that did not hit RAM is offered to the bus first; a device that claims it (its ``write``
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


def _match(r: KvmIoRange, addr: int, length: int) -> bool:
    """``kvm_io_bus_cmp(range, dev) == 0``: the access lies inside the device's range
    (a device of length 0 matches its exact address only)."""
    if addr < r.addr:
        return False
    if r.len:
        return addr + length <= r.addr + r.len
    return addr == r.addr


def kvm_io_bus_register_dev(kvm, bus_idx, addr, length, dev, is_ioeventfd=False):
    """Caller holds ``kvm.slots_lock``."""
    bus = kvm.buses[bus_idx]
    if bus.dev_count - bus.ioeventfd_count > NR_IOBUS_DEVS - 1:
        raise OSError(errno.ENOSPC, f"the {BUS_NAMES[bus_idx]} already holds {NR_IOBUS_DEVS} "
                      "devices (NR_IOBUS_DEVS); unregister zones or devices you no longer need")
    ranges = list(bus.range)
    key = (addr, length)
    i = 0
    while i < len(ranges) and (ranges[i].addr, ranges[i].len) <= key:
        i += 1
    ranges.insert(i, KvmIoRange(addr, length, dev))
    kvm.buses[bus_idx] = KvmIoBus(ranges, bus.ioeventfd_count + (1 if is_ioeventfd else 0))
    kvm.arch.update_devmask()


def kvm_io_bus_unregister_dev(kvm, bus_idx, dev, is_ioeventfd=False):
    """Caller holds ``kvm.slots_lock``."""
    bus = kvm.buses[bus_idx]
    ranges = [r for r in bus.range if r.dev is not dev]
    if len(ranges) == bus.dev_count:
        return -errno.ENOENT
    kvm.buses[bus_idx] = KvmIoBus(ranges, bus.ioeventfd_count - (1 if is_ioeventfd else 0))
    kvm.arch.update_devmask()
    return 0


def kvm_io_bus_write(vcpu, bus, addr, length, data) -> bool:
    """Offer a guest write to the devices on ``bus`` (a published ``KvmIoBus``)."""
    for r in bus.range:
        if _match(r, addr, length) and r.dev.write(vcpu, addr, length, data):
            return True
    return False


def kvm_io_bus_read(vcpu, bus, addr, length):
    for r in bus.range:
        if _match(r, addr, length):
            val = r.dev.read(vcpu, addr, length)
            if val is not None:
                return val
    return None
