"""arch/x86/kvm/irq.c + irq_comm.c: the in-kernel irqchip (PIC pair, IOAPIC, LAPICs).

Not built yet: KVM_CREATE_IRQCHIP fails with a clear error and KVM_CHECK_EXTENSION
reports KVM_CAP_IRQCHIP as 0, so a VMM falls back to KVM_INTERRUPT, as it would on a
kernel without an in-kernel irqchip.
"""
from __future__ import annotations

import errno

AVAILABLE = False


def kvm_create_irqchip(kvm):
    raise OSError(errno.EINVAL, "the simulated kernel has no in-kernel irqchip yet "
                                "(KVM_CAP_IRQCHIP is 0); inject interrupts with KVM_INTERRUPT")


def kvm_set_irq(kvm, source, gsi, level):
    return -1
