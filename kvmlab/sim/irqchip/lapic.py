"""arch/x86/kvm/lapic.c: the in-kernel local APIC, one per vCPU (MMIO at 0xFEE00000).

What a programmer sees: ID, version (0x00050014: version 0x14, 6 LVT entries), TPR/PPR,
EOI, the spurious-interrupt vector register (bit 8 = software enable; 0xFF at reset:
disabled), ISR/TMR/IRR (256-bit each), the LVT (timer, LINT0, LINT1, error, ...), the
interrupt command register (ICR) that sends IPIs (fixed, NMI, INIT, STARTUP), and the
timer (initial/current count, divide configuration; one-shot or periodic).  The timer
runs on host time with KVM's APIC bus cycle of 1 ns, like KVM's hrtimer.
"""
from __future__ import annotations

import struct
import time

from ..iobus import KvmIoDevice

APIC_DEFAULT_PHYS_BASE = 0xFEE00000
APIC_ID, APIC_LVR, APIC_TASKPRI, APIC_ARBPRI, APIC_PROCPRI = 0x20, 0x30, 0x80, 0x90, 0xA0
APIC_EOI, APIC_RRR, APIC_LDR, APIC_DFR, APIC_SPIV = 0xB0, 0xC0, 0xD0, 0xE0, 0xF0
APIC_ISR, APIC_TMR, APIC_IRR, APIC_ESR = 0x100, 0x180, 0x200, 0x280
APIC_LVTCMCI, APIC_ICR, APIC_ICR2 = 0x2F0, 0x300, 0x310
APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR = \
    0x320, 0x330, 0x340, 0x350, 0x360, 0x370
APIC_TMICT, APIC_TMCCT, APIC_TDCR = 0x380, 0x390, 0x3E0
APIC_LVT_MASKED = 1 << 16
APIC_SPIV_APIC_ENABLED = 1 << 8
APIC_LVT_TIMER_PERIODIC = 1 << 17
APIC_VERSION = 0x14
KVM_APIC_LVT_NUM = 6
LVT_MASK = APIC_LVT_MASKED | (1 << 12) | 0xFF
LINT_MASK = LVT_MASK | 0x700 | (1 << 13) | (1 << 14) | (1 << 15)
LVT_REGS = {APIC_LVTT: LVT_MASK | APIC_LVT_TIMER_PERIODIC, APIC_LVTTHMR: LVT_MASK | 0x700,
            APIC_LVTPC: LVT_MASK | 0x700, APIC_LVT0: LINT_MASK, APIC_LVT1: LINT_MASK,
            APIC_LVTERR: LVT_MASK}
APIC_BUS_CYCLE_NS = 1
MIN_TIMER_PERIOD_NS = 200_000          # KVM's min_timer_period_us for periodic mode
# delivery modes (ICR / LVT / IOAPIC bits 10:8)
DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_STARTUP, DM_EXTINT = 0, 1, 2, 4, 5, 6, 7
KVM_APIC_INIT, KVM_APIC_SIPI = 0, 1

READABLE = {APIC_ID, APIC_LVR, APIC_TASKPRI, APIC_ARBPRI, APIC_PROCPRI, APIC_LDR, APIC_DFR,
            APIC_SPIV, APIC_ESR, APIC_ICR, APIC_ICR2, APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC,
            APIC_LVT0, APIC_LVT1, APIC_LVTERR, APIC_TMICT, APIC_TMCCT, APIC_TDCR, APIC_RRR,
            APIC_LVTCMCI} | {APIC_ISR + 0x10 * i for i in range(8)} | \
           {APIC_TMR + 0x10 * i for i in range(8)} | {APIC_IRR + 0x10 * i for i in range(8)}


class KvmLapic(KvmIoDevice):
    """``struct kvm_lapic``."""
    name = "lapic"

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.kvm = vcpu.kvm
        self.regs = bytearray(4096)
        self.pending_events = 0
        self.sipi_vector = 0
        self.divide_count = 2
        self.timer_deadline = 0           # host monotonic ns of the next expiry, 0 = off
        self.timer_period = 0
        self.timer_start = 0
        self.timer_fired = 0
        self.reset(init_event=False)

    # -- register access ---------------------------------------------------------------------
    def get(self, reg):
        return struct.unpack_from("<I", self.regs, reg)[0]

    def set(self, reg, val):
        struct.pack_into("<I", self.regs, reg, val & 0xFFFFFFFF)

    def _bit(self, base, vec):
        return base + 0x10 * (vec >> 5), 1 << (vec & 31)

    def set_vec(self, base, vec):
        r, m = self._bit(base, vec)
        self.set(r, self.get(r) | m)

    def clear_vec(self, base, vec):
        r, m = self._bit(base, vec)
        self.set(r, self.get(r) & ~m)

    def test_vec(self, base, vec):
        r, m = self._bit(base, vec)
        return bool(self.get(r) & m)

    def highest(self, base):
        for i in range(7, -1, -1):
            w = self.get(base + 0x10 * i)
            if w:
                return 32 * i + w.bit_length() - 1
        return -1

    # -- reset (kvm_lapic_reset) ---------------------------------------------------------------
    def reset(self, init_event):
        v = self.vcpu
        self.regs[:] = bytes(4096)
        self.set(APIC_ID, (v.vcpu_id & 0xFF) << 24)
        self.set(APIC_LVR, ((KVM_APIC_LVT_NUM - 1) << 16) | APIC_VERSION)
        for reg in LVT_REGS:
            self.set(reg, APIC_LVT_MASKED)
        if v.vcpu_id == v.kvm.arch.bsp_vcpu_id:
            self.set(APIC_LVT0, DM_EXTINT << 8)
        self.set(APIC_DFR, 0xFFFFFFFF)
        self.set(APIC_SPIV, 0xFF)
        self.set(APIC_LVTCMCI, APIC_LVT_MASKED)
        self.update_divide_count()
        self.timer_deadline = 0
        self.timer_period = 0
        self.pending_events = 0

    # -- state ---------------------------------------------------------------------------------
    def hw_enabled(self):
        return bool(self.vcpu.arch.apic_base() & (1 << 11))

    def sw_enabled(self):
        return bool(self.get(APIC_SPIV) & APIC_SPIV_APIC_ENABLED)

    def enabled(self):
        return self.hw_enabled() and self.sw_enabled()

    def base(self):
        return self.vcpu.arch.apic_base() & ~0xFFF

    def ppr(self):
        tpr = self.get(APIC_TASKPRI) & 0xFF
        isrv = self.highest(APIC_ISR)
        isrv = 0 if isrv < 0 else isrv
        return tpr if (tpr & 0xF0) >= (isrv & 0xF0) else isrv & 0xF0

    def has_interrupt(self):
        """``kvm_apic_has_interrupt``: the vector to deliver, or -1."""
        if not self.enabled():
            return -1
        vec = self.highest(APIC_IRR)
        if vec < 0 or (vec & 0xF0) <= (self.ppr() & 0xF0):
            return -1
        return vec

    def ack_interrupt(self, vec):
        """``kvm_get_apic_interrupt``: the INTA: IRR -> ISR."""
        self.clear_vec(APIC_IRR, vec)
        self.set_vec(APIC_ISR, vec)

    def accept_pic_intr(self):
        """``kvm_apic_accept_pic_intr``: LINT0 in ExtINT mode (or APIC disabled)."""
        lvt0 = self.get(APIC_LVT0)
        if not self.hw_enabled():
            return True
        return (lvt0 & APIC_LVT_MASKED) == 0 and ((lvt0 >> 8) & 7) == DM_EXTINT

    def accept_irq(self, delivery_mode, vector, level, trig_mode):
        """``__apic_accept_irq``: 1 if accepted."""
        arch = self.vcpu.arch
        if delivery_mode in (DM_FIXED, DM_LOWEST):
            if trig_mode and not level:
                return 0
            if not self.enabled():
                return 0
            if trig_mode:
                self.set_vec(APIC_TMR, vector)
            else:
                self.clear_vec(APIC_TMR, vector)
            self.set_vec(APIC_IRR, vector)
            arch.kvm_vcpu_kick_event()
            return 1
        if delivery_mode == DM_NMI:
            arch.nmi_pending = True
            arch.kvm_vcpu_kick_event()
            return 1
        if delivery_mode == DM_INIT:
            if not trig_mode or level:
                self.pending_events = 1 << KVM_APIC_INIT
                arch.kvm_vcpu_kick_event()
                return 1
            return 0
        if delivery_mode == DM_STARTUP:
            self.sipi_vector = vector
            self.pending_events |= 1 << KVM_APIC_SIPI
            arch.kvm_vcpu_kick_event()
            return 1
        return 0

    # -- timer ---------------------------------------------------------------------------------
    def update_divide_count(self):
        tdcr = self.get(APIC_TDCR) & 0xF
        tmp = ((tdcr & 3) | ((tdcr & 8) >> 1)) + 1
        self.divide_count = 1 << (tmp & 7)

    def start_timer(self):
        tmict = self.get(APIC_TMICT)
        if not tmict:
            self.timer_deadline = 0
            self.timer_period = 0
            return
        period = tmict * APIC_BUS_CYCLE_NS * self.divide_count
        if self.get(APIC_LVTT) & APIC_LVT_TIMER_PERIODIC and period < MIN_TIMER_PERIOD_NS:
            period = MIN_TIMER_PERIOD_NS
        now = time.monotonic_ns()
        self.timer_start = now
        self.timer_period = period
        self.timer_deadline = now + period
        self.vcpu.arch.kvm_vcpu_kick_event()

    def current_count(self):
        if not self.timer_deadline or not self.timer_period:
            return 0
        left = max(0, self.timer_deadline - time.monotonic_ns())
        return left // (APIC_BUS_CYCLE_NS * self.divide_count)

    def check_timer(self, now):
        """``apic_timer_fn``: called by the run loop; True if an interrupt was raised."""
        if not self.timer_deadline or now < self.timer_deadline:
            return False
        lvtt = self.get(APIC_LVTT)
        self.timer_fired += 1
        if lvtt & APIC_LVT_TIMER_PERIODIC:
            missed = (now - self.timer_deadline) // self.timer_period + 1
            self.timer_deadline += missed * self.timer_period
        else:
            self.timer_deadline = 0
        if not (lvtt & APIC_LVT_MASKED):
            self.accept_irq(DM_FIXED, lvtt & 0xFF, 1, 0)
            tr = self.kvm.trace
            if tr.on:
                tr.emit(self.vcpu, "kvm_apic_timer_fired", vector=lvtt & 0xFF)
            return True
        return False

    # -- EOI / IPIs ------------------------------------------------------------------------------
    def set_eoi(self):
        vec = self.highest(APIC_ISR)
        if vec < 0:
            return
        self.clear_vec(APIC_ISR, vec)
        trig = 1 if self.test_vec(APIC_TMR, vec) else 0
        ioapic = self.kvm.arch.vioapic
        if ioapic is not None:
            ioapic.update_eoi(vec, trig)
        self.vcpu.arch.kvm_vcpu_kick_event()

    def send_ipi(self, icr_low, icr_high):
        kvm_irq_delivery_to_apic(
            self.kvm, self, dest_id=(icr_high >> 24) & 0xFF, dest_mode=(icr_low >> 11) & 1,
            shorthand=(icr_low >> 18) & 3, delivery_mode=(icr_low >> 8) & 7,
            vector=icr_low & 0xFF, level=(icr_low >> 14) & 1, trig_mode=(icr_low >> 15) & 1)
        tr = self.kvm.trace
        if tr.on:
            tr.emit(self.vcpu, "kvm_apic_ipi", icr_low=icr_low, dest_id=icr_high >> 24)

    # -- MMIO ------------------------------------------------------------------------------------
    def in_range(self, addr):
        return self.hw_enabled() and self.base() <= addr < self.base() + 0x1000

    def reg_read(self, reg):
        if reg == APIC_TMCCT:
            return self.current_count()
        if reg == APIC_PROCPRI:
            return self.ppr()
        if reg == APIC_ARBPRI:
            return 0
        if reg in READABLE:
            return self.get(reg)
        return 0

    def read(self, vcpu, addr, length):
        if not self.in_range(addr):
            return None
        off = addr - self.base()
        reg = off & ~0xF
        with self.kvm.irq_lock:
            val = self.reg_read(reg)
        b = val.to_bytes(4, "little") + bytes(12)
        a = off & 0xF
        return b[a:a + length].ljust(length, b"\0")

    def write(self, vcpu, addr, length, data):
        if not self.in_range(addr):
            return False
        off = addr - self.base()
        if length != 4 or off & 0xF:
            return True                     # KVM ignores (and warns about) such writes
        val = int.from_bytes(bytes(data[:4]), "little")
        with self.kvm.irq_lock:
            self.reg_write(off, val)
        return True

    def reg_write(self, reg, val):
        if reg == APIC_ID:
            self.set(APIC_ID, val & 0xFF000000)
        elif reg == APIC_TASKPRI:
            self.set(APIC_TASKPRI, val & 0xFF)
            self.vcpu.arch.kvm_vcpu_kick_event()
        elif reg == APIC_EOI:
            self.set_eoi()
        elif reg == APIC_LDR:
            self.set(APIC_LDR, val & 0xFF000000)
        elif reg == APIC_DFR:
            self.set(APIC_DFR, val | 0x0FFFFFFF)
        elif reg == APIC_SPIV:
            self.set(APIC_SPIV, val & 0x3FF)
            if not (val & APIC_SPIV_APIC_ENABLED):
                for r in LVT_REGS:
                    self.set(r, self.get(r) | APIC_LVT_MASKED)
            self.vcpu.arch.kvm_vcpu_kick_event()
        elif reg == APIC_ICR:
            val &= ~(1 << 12)                 # delivery status: never busy
            self.set(APIC_ICR, val)
            self.send_ipi(val, self.get(APIC_ICR2))
        elif reg == APIC_ICR2:
            self.set(APIC_ICR2, val & 0xFF000000)
        elif reg in LVT_REGS:
            if not self.sw_enabled():
                val |= APIC_LVT_MASKED
            self.set(reg, val & LVT_REGS[reg])
        elif reg == APIC_TMICT:
            self.set(APIC_TMICT, val)
            self.start_timer()
        elif reg == APIC_TDCR:
            self.set(APIC_TDCR, val & 0xB)
            old = self.divide_count
            self.update_divide_count()
            if old != self.divide_count and self.timer_period:
                self.start_timer()
        elif reg == APIC_ESR:
            self.set(APIC_ESR, 0)
        # other registers are read-only: writes are ignored

    # -- KVM_GET/SET_LAPIC ------------------------------------------------------------------------
    def get_state(self) -> bytes:
        b = bytearray(self.regs[:1024])
        struct.pack_into("<I", b, APIC_TMCCT, self.current_count())
        return bytes(b)

    def set_state(self, b):
        self.regs[:1024] = bytes(b[:1024])
        self.update_divide_count()
        self.start_timer()

    def __repr__(self):
        irr = [v for v in range(256) if self.test_vec(APIC_IRR, v)]
        isr = [v for v in range(256) if self.test_vec(APIC_ISR, v)]
        return (f"lapic(id={self.get(APIC_ID) >> 24} svr={self.get(APIC_SPIV):#x} "
                f"tpr={self.get(APIC_TASKPRI):#x} irr={irr} isr={isr} "
                f"lvt0={self.get(APIC_LVT0):#x} lvtt={self.get(APIC_LVTT):#x} "
                f"tmict={self.get(APIC_TMICT)})")


def _match_dest(target: KvmLapic, source, shorthand, dest_id, dest_mode):
    if shorthand == 1:
        return target is source
    if shorthand == 2:
        return True
    if shorthand == 3:
        return target is not source
    if dest_mode == 0:                             # physical
        return dest_id == 0xFF or (target.get(APIC_ID) >> 24) == dest_id
    if dest_id == 0xFF:
        return True
    logical = target.get(APIC_LDR) >> 24
    if target.get(APIC_DFR) >> 28 == 0xF:        # flat
        return (logical & dest_id) != 0
    return (logical >> 4) == (dest_id >> 4) and (logical & dest_id & 0xF) != 0


def kvm_irq_delivery_to_apic(kvm, source, *, dest_id, dest_mode, shorthand, delivery_mode,
                             vector, level, trig_mode):
    """Deliver to every matching LAPIC (lowest priority: the first match); returns the number
    of APICs that accepted, or -1 if no APIC matched."""
    r = -1
    for v in kvm.vcpus():
        apic = v.arch.apic
        if apic is None or not _match_dest(apic, source, shorthand, dest_id, dest_mode):
            continue
        if r < 0:
            r = 0
        r += apic.accept_irq(delivery_mode, vector, level, trig_mode)
        if delivery_mode == DM_LOWEST:
            break
    return r
