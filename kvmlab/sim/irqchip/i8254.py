"""arch/x86/kvm/i8254.c: the in-kernel 8254 PIT (KVM_CREATE_PIT2), ports 0x40-0x43, and
with KVM_PIT_SPEAKER_DUMMY the speaker port 0x61.

Three counters clocked at 1.193182 MHz of host time.  The control word (port 0x43)
selects a counter, the access mode (latch, LSB, MSB, LSB then MSB) and the mode (0-5);
a count written to 0x40-0x42 starts the counter.  Counter 0's output drives GSI 0:
modes 2 and 3 are periodic, the others one-shot, and each expiry pulses the line, like
KVM's hrtimer (``pit_timer_fn``).  Counter 2's gate is bit 0 of port 0x61.
"""
from __future__ import annotations

import time

from ..iobus import KvmIoDevice

KVM_PIT_FREQ = 1193182
KVM_PIT_BASE_ADDRESS = 0x40
KVM_PIT_SPEAKER_DUMMY = 1


class KvmKpitChannelState:
    def __init__(self, gate):
        self.count = 0x10000
        self.latched_count = 0
        self.count_latched = 0
        self.status_latched = 0
        self.status = 0
        self.read_state = 0
        self.write_state = 0
        self.write_latch = 0
        self.rw_mode = 0
        self.mode = 0xFF
        self.bcd = 0
        self.gate = gate
        self.count_load_time = time.monotonic_ns()

    def ticks(self, now):
        return (now - self.count_load_time) * KVM_PIT_FREQ // 1_000_000_000

    def get_count(self, now):
        d = self.ticks(now)
        if self.mode in (0, 1, 4, 5):
            return (self.count - d) & 0xFFFF
        if self.mode == 3:
            return self.count - ((2 * d) % self.count)
        return self.count - (d % self.count)

    def get_out(self, now):
        d = self.ticks(now)
        c = self.count
        if self.mode in (0, 0xFF):
            return int(d >= c)
        if self.mode == 1:
            return int(d < c)
        if self.mode == 2:
            return int((d % c) == 0 and d != 0)
        if self.mode == 3:
            return int((d % c) < ((c + 1) >> 1))
        return int(d == c)


class KvmPit(KvmIoDevice):
    """``struct kvm_pit``."""
    name = "i8254"

    def __init__(self, kvm, flags):
        self.kvm = kvm
        self.flags = flags
        self.channels = [KvmKpitChannelState(gate=(i != 2)) for i in range(3)]
        self.speaker_data_on = 0
        self.timer_deadline = 0          # next expiry of counter 0 (host ns), 0 = off
        self.timer_period = 0
        self.fired = 0

    # -- counter 0 -> GSI 0 ----------------------------------------------------------------
    def load_count(self, ch, val):
        c = self.channels[ch]
        if val == 0:
            val = 0x10000
        c.count = val
        c.count_load_time = time.monotonic_ns()
        if ch != 0:
            return
        period = val * 1_000_000_000 // KVM_PIT_FREQ
        if c.mode == 0xFF:
            self.timer_deadline = 0
            return
        self.timer_period = period if c.mode in (2, 3) else 0
        self.timer_deadline = c.count_load_time + period
        for v in self.kvm.vcpu_array.values():
            v.arch.kvm_vcpu_kick_event()

    def check_timer(self, now):
        """``pit_timer_fn``: pulse GSI 0 for each expiry (called by the run loop)."""
        if not self.timer_deadline or now < self.timer_deadline:
            return False
        if self.timer_period:
            self.timer_deadline += max(1, (now - self.timer_deadline) // self.timer_period + 1) \
                * self.timer_period
        else:
            self.timer_deadline = 0
        self.fired += 1
        self.kvm.set_irq(2, 0, 1)            # the PIT's own irq source id
        self.kvm.set_irq(2, 0, 0)
        return True

    # -- ports -----------------------------------------------------------------------------
    def _ioport_write(self, port, val):
        now = time.monotonic_ns()
        if port == 3:                          # control word
            ch = val >> 6
            if ch == 3:                        # read-back command
                for i in range(3):
                    if val & (2 << i):
                        c = self.channels[i]
                        if not (val & 0x20) and not c.count_latched:
                            c.latched_count = c.get_count(now)
                            c.count_latched = c.rw_mode
                        if not (val & 0x10) and not c.status_latched:
                            c.status = (c.get_out(now) << 7) | (c.rw_mode << 4) | \
                                ((c.mode & 7) << 1) | c.bcd
                            c.status_latched = 1
                return
            c = self.channels[ch]
            access = (val >> 4) & 3
            if access == 0:                    # counter latch
                if not c.count_latched:
                    c.latched_count = c.get_count(now)
                    c.count_latched = c.rw_mode
                return
            c.rw_mode = access
            c.read_state = c.write_state = access
            c.mode = (val >> 1) & 7
            if c.mode > 5:
                c.mode -= 4
            c.bcd = val & 1
            return
        c = self.channels[port]
        if c.write_state == 1:
            self.load_count(port, val)
        elif c.write_state == 2:
            self.load_count(port, val << 8)
        elif c.write_state == 3:
            c.write_latch = val
            c.write_state = 4
        elif c.write_state == 4:
            self.load_count(port, c.write_latch | (val << 8))
            c.write_state = 3

    def _ioport_read(self, port):
        if port == 3:
            return 0xFF                        # the control port is write-only
        c = self.channels[port]
        now = time.monotonic_ns()
        if c.status_latched:
            c.status_latched = 0
            return c.status
        if c.count_latched:
            if c.count_latched == 2:
                c.count_latched = 0
                return (c.latched_count >> 8) & 0xFF
            if c.count_latched == 3:
                c.count_latched = 4
                return c.latched_count & 0xFF
            if c.count_latched == 4:
                c.count_latched = 0
                return (c.latched_count >> 8) & 0xFF
            c.count_latched = 0
            return c.latched_count & 0xFF
        count = c.get_count(now)
        if c.read_state == 1:
            return count & 0xFF
        if c.read_state == 2:
            return (count >> 8) & 0xFF
        if c.read_state == 3:
            c.read_state = 4
            return count & 0xFF
        c.read_state = 3
        return (count >> 8) & 0xFF

    def write(self, vcpu, addr, length, data):
        if length != 1:
            return False
        with self.kvm.irq_lock:
            if 0x40 <= addr <= 0x43:
                self._ioport_write(addr - 0x40, data[0])
                return True
            if addr == 0x61 and self.flags & KVM_PIT_SPEAKER_DUMMY:
                self.channels[2].gate = data[0] & 1
                self.speaker_data_on = (data[0] >> 1) & 1
                return True
        return False

    def read(self, vcpu, addr, length):
        if length != 1:
            return None
        with self.kvm.irq_lock:
            if 0x40 <= addr <= 0x43:
                return bytes([self._ioport_read(addr - 0x40) & 0xFF])
            if addr == 0x61 and self.flags & KVM_PIT_SPEAKER_DUMMY:
                now = time.monotonic_ns()
                refresh = (now >> 14) & 1
                c2 = self.channels[2]
                return bytes([(c2.get_out(now) << 5) | (refresh << 4) |
                              (self.speaker_data_on << 1) | c2.gate])
        return None

    def __repr__(self):
        c = self.channels
        return (f"kvm_pit(ch0 mode={c[0].mode} count={c[0].count:#x}, ch2 gate={c[2].gate}, "
                f"irq0 pulses={self.fired})")
