"""virt/kvm/irqchip.c + arch/x86/kvm/irq_comm.c: GSI routing and ``kvm_set_irq``.

``kvm->irq_routing`` maps a GSI to the irqchip pins it drives.  The default table made by
KVM_CREATE_IRQCHIP routes GSI 0-15 to both the PIC pair and the IOAPIC, and GSI 16-23 to
the IOAPIC only.  ``kvm_set_irq`` drives every route of a GSI and returns the sum of the
chips' answers: >0 delivered, 0 coalesced (already pending), -1 masked or no route.
"""
from __future__ import annotations

KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC = 0, 1, 2
KVM_MAX_IRQ_ROUTES = 4096


class KvmKernelIrqRoutingEntry:
    """``struct kvm_kernel_irq_routing_entry`` (irqchip type)."""
    __slots__ = ("gsi", "irqchip", "pin")

    def __init__(self, gsi, irqchip, pin):
        self.gsi, self.irqchip, self.pin = gsi, irqchip, pin

    def __repr__(self):
        chip = ("pic-master", "pic-slave", "ioapic")[self.irqchip]
        return f"gsi {self.gsi} -> {chip} pin {self.pin}"


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
            if e.irqchip == KVM_IRQCHIP_IOAPIC:
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
