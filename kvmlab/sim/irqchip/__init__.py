"""arch/x86/kvm/irq.c: the in-kernel irqchip (KVM_CREATE_IRQCHIP): a PIC pair
(:mod:`.i8259`), an IOAPIC (:mod:`.ioapic`), a LAPIC per vCPU (:mod:`.lapic`) and the GSI
routing that connects interrupt lines to them (:mod:`.irq_comm`).

Interrupts reach a vCPU the way ``kvm_cpu_has_interrupt`` / ``kvm_cpu_get_interrupt``
find them: the PIC's output if the LAPIC accepts ExtINT on LINT0, else the LAPIC's
highest pending vector above the processor priority.
"""
from __future__ import annotations

import errno
import struct

from ..iobus import KVM_MMIO_BUS, KVM_PIO_BUS, kvm_io_bus_register_dev
from .i8259 import KvmPic
from .ioapic import IOAPIC_DEFAULT_BASE_ADDRESS, IOAPIC_MEM_LENGTH, KvmIoapic
from .irq_comm import default_routing, kvm_set_irq  # noqa: F401
from .lapic import KvmLapic  # noqa: F401

AVAILABLE = True
KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC = 0, 1, 2


def kvm_create_irqchip(kvm):
    """``kvm_pic_init`` + ``kvm_ioapic_init`` + ``kvm_setup_default_irq_routing``."""
    pic = KvmPic(kvm)
    ioapic = KvmIoapic(kvm)
    with kvm.slots_lock:
        kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0x20, 2, pic)
        kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0xA0, 2, pic)
        kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0x4D0, 2, pic)
        kvm_io_bus_register_dev(kvm, KVM_MMIO_BUS, IOAPIC_DEFAULT_BASE_ADDRESS,
                                IOAPIC_MEM_LENGTH, ioapic)
    kvm.arch.vpic = pic
    kvm.arch.vioapic = ioapic
    kvm.irq_routing = default_routing()


def get_irqchip(kvm, b):
    chip_id = struct.unpack_from("<I", b, 0)[0]
    with kvm.irq_lock:
        if chip_id in (KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE):
            b[8:24] = kvm.arch.vpic.pics[chip_id].pack()
        elif chip_id == KVM_IRQCHIP_IOAPIC:
            b[8:8 + 216] = kvm.arch.vioapic.pack()
        else:
            raise OSError(errno.EINVAL, f"kvm_irqchip.chip_id {chip_id} is not 0 (PIC master), "
                                        "1 (PIC slave) or 2 (IOAPIC)")
    return 0


def set_irqchip(kvm, b):
    chip_id = struct.unpack_from("<I", b, 0)[0]
    with kvm.irq_lock:
        if chip_id in (KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE):
            kvm.arch.vpic.pics[chip_id].unpack(bytes(b[8:24]))
            kvm.arch.vpic.update_irq()
        elif chip_id == KVM_IRQCHIP_IOAPIC:
            kvm.arch.vioapic.unpack(bytes(b[8:8 + 216]))
        else:
            raise OSError(errno.EINVAL, f"kvm_irqchip.chip_id {chip_id} is not 0 (PIC master), "
                                        "1 (PIC slave) or 2 (IOAPIC)")
    return 0
