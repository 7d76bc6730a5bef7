"""arch/x86/kvm/ioapic.c: the in-kernel IOAPIC (24 pins, MMIO at 0xFEC00000).

The guest programs it through two MMIO registers: IOREGSEL (offset 0x00) selects a
register, IOWIN (offset 0x10) reads or writes it.  Register 0 is the ID, 1 the version
(0x00170011: 24 entries, version 0x11), 0x10 + 2n / 0x11 + 2n the low/high halves of
redirection entry n: vector, delivery mode, destination mode, polarity, remote IRR,
trigger mode, mask, destination.  All entries start masked.
"""
from __future__ import annotations

import struct

from ..iobus import KvmIoDevice

IOAPIC_NUM_PINS = 24
IOAPIC_DEFAULT_BASE_ADDRESS = 0xFEC00000
IOAPIC_MEM_LENGTH = 0x100
IOAPIC_VERSION_ID = 0x11
IOAPIC_REG_SELECT, IOAPIC_REG_WINDOW, IOAPIC_REG_EOI = 0x00, 0x10, 0x40
IOAPIC_LEVEL_TRIG = 1
MASKED = 1 << 16
REMOTE_IRR = 1 << 14
TRIG_LEVEL = 1 << 15


def fields(e):
    return dict(vector=e & 0xFF, delivery_mode=(e >> 8) & 7, dest_mode=(e >> 11) & 1,
                delivery_status=(e >> 12) & 1, polarity=(e >> 13) & 1,
                remote_irr=(e >> 14) & 1, trig_mode=(e >> 15) & 1, mask=(e >> 16) & 1,
                dest_id=(e >> 56) & 0xFF)


class KvmIoapic(KvmIoDevice):
    """``struct kvm_ioapic``."""
    name = "ioapic"

    def __init__(self, kvm):
        self.kvm = kvm
        self.base_address = IOAPIC_DEFAULT_BASE_ADDRESS
        self.reset()

    def reset(self):
        self.ioregsel = 0
        self.id = 0
        self.irr = 0
        self.irr_delivered = 0
        self.redirtbl = [MASKED] * IOAPIC_NUM_PINS
        self.irq_states = [0] * IOAPIC_NUM_PINS

    # -- lines -----------------------------------------------------------------------------
    def set_irq(self, irq, source, level):
        """``kvm_ioapic_set_irq`` -> ``ioapic_set_irq``."""
        if irq < 0 or irq >= IOAPIC_NUM_PINS:
            return -1
        if level:
            self.irq_states[irq] |= 1 << source
        else:
            self.irq_states[irq] &= ~(1 << source)
        irq_level = 1 if self.irq_states[irq] else 0
        mask = 1 << irq
        entry = self.redirtbl[irq]
        edge = not (entry & TRIG_LEVEL)
        if not irq_level:
            self.irr &= ~mask
            return 1
        old_irr = self.irr
        self.irr |= mask
        if edge:
            self.irr_delivered &= ~mask
            if old_irr == self.irr:
                return 0
        return self.service(irq)

    def service(self, irq):
        e = self.redirtbl[irq]
        f = fields(e)
        if f["mask"] or (f["trig_mode"] == IOAPIC_LEVEL_TRIG and f["remote_irr"]):
            return -1
        if f["trig_mode"] != IOAPIC_LEVEL_TRIG:
            self.irr_delivered |= 1 << irq
        from .lapic import kvm_irq_delivery_to_apic
        ret = kvm_irq_delivery_to_apic(self.kvm, None, dest_id=f["dest_id"],
                                       dest_mode=f["dest_mode"], shorthand=0,
                                       delivery_mode=f["delivery_mode"], vector=f["vector"],
                                       level=1, trig_mode=f["trig_mode"])
        if ret and f["trig_mode"] == IOAPIC_LEVEL_TRIG:
            self.redirtbl[irq] |= REMOTE_IRR
        return ret

    def update_eoi(self, vector, trigger_mode, directed_eoi=False):
        """``kvm_ioapic_update_eoi``: a LAPIC EOI for ``vector``."""
        for i in range(IOAPIC_NUM_PINS):
            e = self.redirtbl[i]
            if (e & 0xFF) != vector:
                continue
            self.kvm.arch_ack_irq(i)                       # ack notifiers (resample)
            if trigger_mode != IOAPIC_LEVEL_TRIG or directed_eoi:
                continue
            self.redirtbl[i] &= ~REMOTE_IRR
            if not (self.redirtbl[i] & MASKED) and (self.irr & (1 << i)):
                self.service(i)

    # -- registers -------------------------------------------------------------------------
    def read_indirect(self):
        sel = self.ioregsel
        if sel == 0:
            return (self.id & 0xF) << 24
        if sel == 1:
            return ((IOAPIC_NUM_PINS - 1) << 16) | IOAPIC_VERSION_ID
        if sel == 2:
            return (self.id & 0xF) << 24
        idx = (sel - 0x10) >> 1
        if 0 <= idx < IOAPIC_NUM_PINS:
            e = self.redirtbl[idx]
            return (e >> 32) & 0xFFFFFFFF if sel & 1 else e & 0xFFFFFFFF
        return 0xFFFFFFFF if sel >= 0x10 else 0

    def write_indirect(self, val):
        sel = self.ioregsel
        if sel == 0:
            self.id = (val >> 24) & 0xF
            return
        if sel in (1, 2):
            return                                   # read only
        idx = (sel - 0x10) >> 1
        if not (0 <= idx < IOAPIC_NUM_PINS):
            return
        e = self.redirtbl[idx]
        if sel & 1:
            e = (e & 0xFFFFFFFF) | (val << 32)
        else:
            # delivery status and remote IRR are read-only
            keep = e & (REMOTE_IRR | (1 << 12))
            e = (e & ~0xFFFFFFFF) | (val & 0xFFFFFFFF & ~(REMOTE_IRR | (1 << 12))) | keep
        # an edge-triggered entry has no remote IRR
        if not (e & TRIG_LEVEL):
            e &= ~REMOTE_IRR
        self.redirtbl[idx] = e
        if (e & TRIG_LEVEL) and (self.irr & (1 << idx)) and not (e & MASKED) and \
                not (e & REMOTE_IRR):
            self.service(idx)

    def in_range(self, addr):
        return self.base_address <= addr < self.base_address + IOAPIC_MEM_LENGTH

    def read(self, vcpu, addr, length):
        if not self.in_range(addr):
            return None
        off = (addr - self.base_address) & 0xFF
        with self.kvm.irq_lock:
            if off == IOAPIC_REG_SELECT:
                val = self.ioregsel
            elif off == IOAPIC_REG_WINDOW:
                val = self.read_indirect()
            else:
                val = 0
        return (val & 0xFFFFFFFF).to_bytes(8, "little")[:length]

    def write(self, vcpu, addr, length, data):
        if not self.in_range(addr):
            return False
        off = (addr - self.base_address) & 0xFF
        val = int.from_bytes(bytes(data[:length]), "little")
        if length == 8:
            val &= 0xFFFFFFFF
        with self.kvm.irq_lock:
            if off == IOAPIC_REG_SELECT:
                self.ioregsel = val & 0xFF
            elif off == IOAPIC_REG_WINDOW:
                self.write_indirect(val)
            elif off == IOAPIC_REG_EOI:
                self.update_eoi(val & 0xFF, IOAPIC_LEVEL_TRIG)
        return True

    # -- KVM_GET/SET_IRQCHIP (struct kvm_ioapic_state, 216 bytes) ---------------------------
    def pack(self) -> bytes:
        return struct.pack("<QIIII24Q", self.base_address, self.ioregsel, self.id, self.irr, 0,
                           *self.redirtbl)

    def unpack(self, b):
        vals = struct.unpack_from("<QIIII24Q", b, 0)
        self.base_address, self.ioregsel, self.id, self.irr = vals[0], vals[1], vals[2], vals[3]
        self.redirtbl = list(vals[5:])

    def __repr__(self):
        unmasked = [i for i, e in enumerate(self.redirtbl) if not e & MASKED]
        return (f"kvm_ioapic(base={self.base_address:#x} id={self.id} irr={self.irr:#x} "
                f"unmasked pins={unmasked})")
