"""arch/x86/kvm/i8259.c: the in-kernel 8259A PIC pair (master 0x20/0x21, slave 0xA0/0xA1,
ELCR 0x4D0/0x4D1).

``struct kvm_kpic_state`` holds what a programmer sees: IRR (requests), IMR (mask), ISR
(in service), the vector base from ICW2, the ICW1..ICW4 initialisation sequence
(``init_state``), rotation (``priority_add``), auto-EOI, special fully nested mode, poll
mode and the edge/level control register.  The master's INT output goes to the BSP's
LAPIC LINT0 (ExtINT at reset), so IRQ n reaches a real-mode guest as vector
``irq_base + n`` without touching the LAPIC.
"""
from __future__ import annotations

import struct

from ..iobus import KvmIoDevice

# struct kvm_pic_state (16 bytes), in order
FIELDS = ("last_irr", "irr", "imr", "isr", "priority_add", "irq_base", "read_reg_select",
          "poll", "special_mask", "init_state", "auto_eoi", "rotate_on_auto_eoi",
          "special_fully_nested_mode", "init4", "elcr", "elcr_mask")


class KvmKpicState:
    """``struct kvm_kpic_state``: one 8259A."""

    def __init__(self, pics, master: bool):
        self.pics_state = pics
        self.master = master
        for f in FIELDS:
            setattr(self, f, 0)
        self.elcr_mask = 0xF8 if master else 0xDE

    # -- priorities ----------------------------------------------------------------------
    def get_priority(self, mask):
        if mask == 0:
            return 8
        priority = 0
        while (mask & (1 << ((priority + self.priority_add) & 7))) == 0:
            priority += 1
        return priority

    def get_irq(self):
        """``pic_get_irq``: the highest-priority requested, unmasked IRQ that beats the one
        in service, or -1."""
        mask = self.irr & ~self.imr
        priority = self.get_priority(mask)
        if priority == 8:
            return -1
        mask = self.isr
        if self.special_fully_nested_mode and self.master:
            mask &= ~(1 << 2)
        cur_priority = self.get_priority(mask)
        if priority < cur_priority:
            return (priority + self.priority_add) & 7
        return -1

    def set_irq1(self, irq, level):
        """``pic_set_irq1``: 1 = newly raised, 0 = already pending (coalesced), -1 masked."""
        mask = 1 << irq
        ret = 1
        if self.elcr & mask:                 # level triggered
            if level:
                ret = int(not (self.irr & mask))
                self.irr |= mask
                self.last_irr |= mask
            else:
                self.irr &= ~mask
                self.last_irr &= ~mask
        else:                                # edge triggered
            if level:
                if (self.last_irr & mask) == 0:
                    ret = int(not (self.irr & mask))
                    self.irr |= mask
                self.last_irr |= mask
            else:
                self.last_irr &= ~mask
        return -1 if self.imr & mask else ret

    def intack(self, irq):
        self.isr |= 1 << irq
        if not (self.elcr & (1 << irq)):      # a level-triggered request stays in IRR
            self.irr &= ~(1 << irq)
        if self.auto_eoi:
            if self.rotate_on_auto_eoi:
                self.priority_add = (irq + 1) & 7
            self.clear_isr(irq)

    def clear_isr(self, irq):
        self.isr &= ~(1 << irq)
        gsi = irq if self.master else irq + 8
        if gsi != 2:
            self.pics_state.kvm.arch_ack_irq(gsi)      # ack notifiers (irqfd resample)

    # -- port I/O ------------------------------------------------------------------------
    def ioport_write(self, addr, val):
        pics = self.pics_state
        if (addr & 1) == 0:
            if val & 0x10:                     # ICW1
                self.init4 = val & 1
                self.last_irr = 0
                self.irr &= self.elcr
                self.imr = 0
                self.priority_add = 0
                self.special_mask = 0
                self.read_reg_select = 0
                if not self.init4:
                    self.special_fully_nested_mode = 0
                    self.auto_eoi = 0
                self.init_state = 1
            elif val & 0x08:                   # OCW3
                if val & 0x04:
                    self.poll = 1
                if val & 0x02:
                    self.read_reg_select = val & 1
                if val & 0x40:
                    self.special_mask = (val >> 5) & 1
            else:                              # OCW2
                cmd = val >> 5
                if cmd in (0, 4):
                    self.rotate_on_auto_eoi = cmd >> 2
                elif cmd in (1, 5):            # (rotating) non-specific EOI
                    priority = self.get_priority(self.isr)
                    if priority != 8:
                        irq = (priority + self.priority_add) & 7
                        if cmd == 5:
                            self.priority_add = (irq + 1) & 7
                        self.clear_isr(irq)
                        pics.update_irq()
                elif cmd == 3:                 # specific EOI
                    self.clear_isr(val & 7)
                    pics.update_irq()
                elif cmd == 6:                 # set priority
                    self.priority_add = (val + 1) & 7
                    pics.update_irq()
                elif cmd == 7:                 # rotate on specific EOI
                    irq = val & 7
                    self.priority_add = (irq + 1) & 7
                    self.clear_isr(irq)
                    pics.update_irq()
        else:
            if self.init_state == 0:           # OCW1: the mask
                self.imr = val
                pics.update_irq()
            elif self.init_state == 1:         # ICW2: vector base
                self.irq_base = val & 0xF8
                self.init_state = 2
            elif self.init_state == 2:         # ICW3: cascade
                self.init_state = 3 if self.init4 else 0
            elif self.init_state == 3:         # ICW4
                self.special_fully_nested_mode = (val >> 4) & 1
                self.auto_eoi = (val >> 1) & 1
                self.init_state = 0

    def poll_read(self, addr1):
        pics = self.pics_state
        ret = self.get_irq()
        if ret >= 0:
            if addr1 >> 7:
                pics.pics[0].isr &= ~(1 << 2)
                pics.pics[0].irr &= ~(1 << 2)
            self.irr &= ~(1 << ret)
            self.clear_isr(ret)
            if addr1 >> 7 or ret != 2:
                pics.update_irq()
            return ret | 0x80
        pics.update_irq()
        return 0x07

    def ioport_read(self, addr):
        if self.poll:
            ret = self.poll_read(addr)
            self.poll = 0
            return ret
        if (addr & 1) == 0:
            return self.isr if self.read_reg_select else self.irr
        return self.imr

    def pack(self) -> bytes:
        return bytes(getattr(self, f) & 0xFF for f in FIELDS)

    def unpack(self, b):
        for f, v in zip(FIELDS, b[:16]):
            setattr(self, f, v)

    def __repr__(self):
        return (f"{'master' if self.master else 'slave'}: irr={self.irr:#04x} imr={self.imr:#04x} "
                f"isr={self.isr:#04x} irq_base={self.irq_base:#04x} elcr={self.elcr:#04x} "
                f"init_state={self.init_state}")


class KvmPic(KvmIoDevice):
    """``struct kvm_pic``: both chips, their per-source line state, and the INT output."""
    name = "i8259"

    def __init__(self, kvm):
        self.kvm = kvm
        self.pics = [KvmKpicState(self, True), KvmKpicState(self, False)]
        self.irq_states = [0] * 16           # per IRQ: bitmask of sources holding the line
        self.output = 0
        self.wakeup_needed = False

    def set_irq(self, irq, source, level):
        """``kvm_pic_set_irq``."""
        if irq < 0 or irq >= 16:
            return -1
        if level:
            self.irq_states[irq] |= 1 << source
        else:
            self.irq_states[irq] &= ~(1 << source)
        line = 1 if self.irq_states[irq] else 0
        ret = self.pics[irq >> 3].set_irq1(irq & 7, line)
        self.update_irq()
        return ret

    def update_irq(self):
        """``pic_update_irq``: cascade slave -> master IR2, then drive INT."""
        if self.pics[1].get_irq() >= 0:
            self.pics[0].set_irq1(2, 1)
            self.pics[0].set_irq1(2, 0)
        irq = self.pics[0].get_irq()
        level = 1 if irq >= 0 else 0
        if level and not self.output:
            self.kvm.arch_kick_bsp()
        self.output = level

    def read_irq(self):
        """``kvm_pic_read_irq``: the INTA cycle; returns the vector."""
        s = self.pics
        irq = s[0].get_irq()
        if irq >= 0:
            s[0].intack(irq)
            if irq == 2:
                irq2 = s[1].get_irq()
                if irq2 >= 0:
                    s[1].intack(irq2)
                else:
                    irq2 = 7                   # spurious IRQ on the slave
                intno = s[1].irq_base + irq2
            else:
                intno = s[0].irq_base + irq
        else:
            intno = s[0].irq_base + 7          # spurious IRQ on the master
        self.update_irq()
        return intno

    # -- the PIO device ------------------------------------------------------------------
    def _chip(self, addr):
        if addr in (0x20, 0x21):
            return self.pics[0]
        if addr in (0xA0, 0xA1):
            return self.pics[1]
        return None

    def write(self, vcpu, addr, length, data):
        if length != 1:
            return False
        val = data[0]
        with self.kvm.irq_lock:
            if addr in (0x4D0, 0x4D1):
                s = self.pics[addr & 1]
                s.elcr = val & s.elcr_mask
                return True
            s = self._chip(addr)
            if s is None:
                return False
            s.ioport_write(addr, val)
        return True

    def read(self, vcpu, addr, length):
        if length != 1:
            return None
        with self.kvm.irq_lock:
            if addr in (0x4D0, 0x4D1):
                return bytes([self.pics[addr & 1].elcr])
            s = self._chip(addr)
            if s is None:
                return None
            return bytes([s.ioport_read(addr) & 0xFF])

    def __repr__(self):
        return f"kvm_pic(output={self.output}; {self.pics[0]!r}; {self.pics[1]!r})"
