"""virt/kvm/irqchip.c + arch/x86/kvm/irq_comm.c: GSI routing and ``kvm_set_irq``.

``kvm->irq_routing`` maps a GSI to the irqchip pins it drives.  The default table made by
KVM_CREATE_IRQCHIP routes GSI 0-15 to both the PIC pair and the IOAPIC, and GSI 16-23 to
the IOAPIC only.  ``kvm_set_irq`` drives every route of a GSI and returns the sum of the
chips' answers: >0 delivered, 0 coalesced (already pending), -1 masked or no route.
"""
from __future__ import annotations

KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC = 0, 1, 2
KVM_MAX_IRQ_ROUTES = 4096


KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI = 1, 2
KVM_MSI_VALID_DEVID = 1


class KvmKernelIrqRoutingEntry:
    """``struct kvm_kernel_irq_routing_entry``: an irqchip pin, or an MSI message."""
    __slots__ = ("gsi", "irqchip", "pin", "type", "address_lo", "address_hi", "data")

    def __init__(self, gsi, irqchip, pin, type_=KVM_IRQ_ROUTING_IRQCHIP, msi=(0, 0, 0)):
        self.gsi, self.irqchip, self.pin, self.type = gsi, irqchip, pin, type_
        self.address_lo, self.address_hi, self.data = msi

    def __repr__(self):
        if self.type == KVM_IRQ_ROUTING_MSI:
            return (f"gsi {self.gsi} -> msi addr={self.address_hi:#x}:{self.address_lo:#x} "
                    f"data={self.data:#x}")
        chip = ("pic-master", "pic-slave", "ioapic")[self.irqchip]
        return f"gsi {self.gsi} -> {chip} pin {self.pin}"


def kvm_set_msi(kvm, address_lo, data, level=1):
    """``kvm_set_msi``: an MSI is a write to the LAPIC's message address: destination in
    address bits 19:12 (logical if bit 2), vector/delivery mode/trigger in the data."""
    if not level:
        return -1
    from .lapic import kvm_irq_delivery_to_apic
    return kvm_irq_delivery_to_apic(kvm, None, dest_id=(address_lo >> 12) & 0xFF,
                                    dest_mode=(address_lo >> 2) & 1, shorthand=0,
                                    delivery_mode=(data >> 8) & 7, vector=data & 0xFF,
                                    level=1, trig_mode=(data >> 15) & 1)


def kvm_set_irq_routing(kvm, buf):
    """KVM_SET_GSI_ROUTING: replace the routing table (``kvm_set_irq_routing``)."""
    import errno
    import struct
    nr, flags = struct.unpack_from("<II", buf, 0)
    if not kvm.arch.irqchip_in_kernel():
        raise OSError(errno.EINVAL, "KVM_SET_GSI_ROUTING needs an in-kernel irqchip "
                                    "(KVM_CREATE_IRQCHIP)")
    if nr > KVM_MAX_IRQ_ROUTES:
        raise OSError(errno.EINVAL, f"kvm_irq_routing.nr={nr}: at most {KVM_MAX_IRQ_ROUTES} routes")
    if flags:
        raise OSError(errno.EINVAL, "kvm_irq_routing.flags must be 0")
    if len(buf) < 8 + 48 * nr:
        raise OSError(errno.EFAULT, f"kvm_irq_routing.nr={nr} but the buffer is shorter; size "
                                    "it with kvm_irq_routing_with(n)")
    table = {}
    for i in range(nr):
        gsi, typ, eflags, _, a, b, c, _ = struct.unpack_from("<IIII4I", buf, 8 + 48 * i)
        if gsi >= KVM_MAX_IRQ_ROUTES:
            raise OSError(errno.EINVAL, f"route {i}: gsi {gsi} >= {KVM_MAX_IRQ_ROUTES}")
        if eflags & ~(KVM_MSI_VALID_DEVID if typ == KVM_IRQ_ROUTING_MSI else 0):
            raise OSError(errno.EINVAL, f"route {i}: unknown flags {eflags:#x}")
        for old in table.get(gsi, ()):
            if old.type != KVM_IRQ_ROUTING_IRQCHIP or typ != KVM_IRQ_ROUTING_IRQCHIP or \
                    old.irqchip == a:
                raise OSError(errno.EINVAL, f"route {i}: gsi {gsi} is already routed to this "
                                            "irqchip (or to an MSI)")
        if typ == KVM_IRQ_ROUTING_IRQCHIP:
            if a in (KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE):
                if b >= 8:
                    raise OSError(errno.EINVAL, f"route {i}: PIC pin {b} >= 8")
            elif a == KVM_IRQCHIP_IOAPIC:
                if b >= 24:
                    raise OSError(errno.EINVAL, f"route {i}: IOAPIC pin {b} >= 24")
            else:
                raise OSError(errno.EINVAL, f"route {i}: irqchip {a} is not 0, 1 or 2")
            e = KvmKernelIrqRoutingEntry(gsi, a, b)
        elif typ == KVM_IRQ_ROUTING_MSI:
            e = KvmKernelIrqRoutingEntry(gsi, 0, 0, KVM_IRQ_ROUTING_MSI, (a, b, c))
        else:
            raise OSError(errno.EINVAL, f"route {i}: type {typ} is not IRQCHIP (1) or MSI (2)")
        table.setdefault(gsi, []).append(e)
    with kvm.irq_lock:
        kvm.irq_routing = table
    return 0


def default_routing():
    table = {}
    for gsi in range(16):
        table[gsi] = [KvmKernelIrqRoutingEntry(gsi, KVM_IRQCHIP_PIC_MASTER if gsi < 8 else
                                               KVM_IRQCHIP_PIC_SLAVE, gsi % 8),
                      KvmKernelIrqRoutingEntry(gsi, KVM_IRQCHIP_IOAPIC, gsi)]
    for gsi in range(16, 24):
        table[gsi] = [KvmKernelIrqRoutingEntry(gsi, KVM_IRQCHIP_IOAPIC, gsi)]
    return table


def kvm_set_irq(kvm, irq_source_id, gsi, level):
    routes = kvm.irq_routing.get(gsi) if kvm.irq_routing else None
    if not routes:
        return -1
    arch = kvm.arch
    ret = -1
    with kvm.irq_lock:
        for e in routes:
            if e.type == KVM_IRQ_ROUTING_MSI:
                r = kvm_set_msi(kvm, e.address_lo, e.data, level)
            elif e.irqchip == KVM_IRQCHIP_IOAPIC:
                r = arch.vioapic.set_irq(e.pin, irq_source_id, level)
            else:
                r = arch.vpic.set_irq(e.pin + (8 if e.irqchip == KVM_IRQCHIP_PIC_SLAVE else 0),
                                      irq_source_id, level)
            if r < 0:
                continue
            ret = r + (0 if ret < 0 else ret)
    tr = kvm.trace
    if tr.on:
        tr.emit(None, "kvm_set_irq", gsi=gsi, level=level, source=irq_source_id, status=ret)
    return ret
