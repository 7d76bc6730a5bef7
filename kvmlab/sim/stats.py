"""virt/kvm/binary_stats.c + the stat descriptors of virt/kvm/kvm_main.c and arch/x86/kvm/x86.c.

``struct kvm_vm_stat`` and ``struct kvm_vcpu_stat`` are numpy ``uint64`` arrays, one slot per
counter, in the kernel's order (so the byte offsets of reference §15 come out the same).
The kernel code increments them with ``stat[IDX] += 1``.  ``KVM_GET_STATS_FD`` returns a
read-only file whose bytes are the binary stats format: header, id string, descriptors,
then the live data block, built at every ``pread`` the way ``kvm_stats_read`` copies it.
"""
from __future__ import annotations

import errno
import os
import struct

import numpy as np

# flags: type | unit | base
TYPE_CUMULATIVE, TYPE_INSTANT, TYPE_PEAK, TYPE_LINEAR_HIST, TYPE_LOG_HIST = 0, 1, 2, 3, 4
UNIT_NONE, UNIT_BYTES, UNIT_SECONDS, UNIT_CYCLES, UNIT_BOOLEAN = 0x00, 0x10, 0x20, 0x30, 0x40
BASE_POW10, BASE_POW2 = 0x000, 0x100
NAME_SIZE = 48          # KVM_STATS_NAME_SIZE
HEADER_SIZE = 24


class StatDesc:
    """One ``struct _kvm_stats_desc``: name, flags, exponent, size (u64 values), offset."""
    __slots__ = ("name", "flags", "exponent", "size", "offset", "bucket_size")

    def __init__(self, name, flags=TYPE_CUMULATIVE, exponent=0, size=1, bucket_size=0):
        self.name, self.flags, self.exponent, self.size = name, flags, exponent, size
        self.bucket_size = bucket_size
        self.offset = 0


def _c(name):
    return StatDesc(name)


def _i(name, unit=UNIT_NONE):
    return StatDesc(name, TYPE_INSTANT | unit)


def _p(name):
    return StatDesc(name, TYPE_PEAK)


def _ns(name):
    return StatDesc(name, TYPE_CUMULATIVE | UNIT_SECONDS, -9)


def _hist(name):
    return StatDesc(name, TYPE_LOG_HIST | UNIT_SECONDS, -9, 32)


# Storage order = struct order (offsets), and the descriptor order as the kernel lists them.
VM_STATS_STORAGE = [_c("remote_tlb_flush"), _c("remote_tlb_flush_requests"),
                    _c("mmu_shadow_zapped"), _c("mmu_pte_write"), _c("mmu_pde_zapped"),
                    _c("mmu_flooded"), _c("mmu_recycled"), _c("mmu_cache_miss"),
                    _i("mmu_unsync"), _i("pages_4k"), _i("pages_2m"), _i("pages_1g"),
                    _i("nx_lpage_splits"), _p("max_mmu_page_hash_collisions"),
                    _p("max_mmu_rmap_size")]
VM_DESC_ORDER = [d.name for d in VM_STATS_STORAGE[:13]] + [
    "max_mmu_rmap_size", "max_mmu_page_hash_collisions"]

VCPU_STATS_STORAGE = [
    _c("halt_successful_poll"), _c("halt_attempted_poll"), _c("halt_poll_invalid"),
    _c("halt_wakeup"), _ns("halt_poll_success_ns"), _ns("halt_poll_fail_ns"),
    _ns("halt_wait_ns"), _hist("halt_poll_success_hist"), _hist("halt_poll_fail_hist"),
    _hist("halt_wait_hist"), _i("blocking", UNIT_BOOLEAN),
    _c("pf_taken"), _c("pf_fixed"), _c("pf_emulate"), _c("pf_spurious"), _c("pf_fast"),
    _c("pf_mmio_spte_created"), _c("pf_guest"), _c("tlb_flush"), _c("invlpg"),
    _c("exits"), _c("io_exits"), _c("mmio_exits"), _c("signal_exits"),
    _c("irq_window_exits"), _c("nmi_window_exits"), _c("l1d_flush"), _c("halt_exits"),
    _c("request_irq_exits"), _c("irq_exits"), _c("host_state_reload"), _c("fpu_reload"),
    _c("insn_emulation"), _c("insn_emulation_fail"), _c("hypercalls"),
    _c("irq_injections"), _c("nmi_injections"), _c("req_event"), _c("nested_run"),
    _c("directed_yield_attempted"), _c("directed_yield_successful"),
    _c("preemption_reported"), _c("preemption_other"), _i("guest_mode", UNIT_BOOLEAN),
    _c("notify_window_exits")]
VCPU_DESC_ORDER = [d.name for d in VCPU_STATS_STORAGE]


def _layout(storage):
    off = 0
    index = {}
    for d in storage:
        d.offset = off
        index[d.name] = off // 8
        off += 8 * d.size
    return off // 8, index


VM_STAT_WORDS, VM_STAT = _layout(VM_STATS_STORAGE)
VCPU_STAT_WORDS, VCPU_STAT = _layout(VCPU_STATS_STORAGE)
VM_DESCS = [next(d for d in VM_STATS_STORAGE if d.name == n) for n in VM_DESC_ORDER]
VCPU_DESCS = [next(d for d in VCPU_STATS_STORAGE if d.name == n) for n in VCPU_DESC_ORDER]

# index constants used by the run loop (word index into the stat array)
EXITS = VCPU_STAT["exits"]
IO_EXITS = VCPU_STAT["io_exits"]
MMIO_EXITS = VCPU_STAT["mmio_exits"]
SIGNAL_EXITS = VCPU_STAT["signal_exits"]
IRQ_WINDOW_EXITS = VCPU_STAT["irq_window_exits"]
HALT_EXITS = VCPU_STAT["halt_exits"]
IRQ_EXITS = VCPU_STAT["irq_exits"]
REQUEST_IRQ_EXITS = VCPU_STAT["request_irq_exits"]
IRQ_INJECTIONS = VCPU_STAT["irq_injections"]
NMI_INJECTIONS = VCPU_STAT["nmi_injections"]
INSN_EMULATION = VCPU_STAT["insn_emulation"]
INSN_EMULATION_FAIL = VCPU_STAT["insn_emulation_fail"]
PF_TAKEN = VCPU_STAT["pf_taken"]
PF_GUEST = VCPU_STAT["pf_guest"]
TLB_FLUSH = VCPU_STAT["tlb_flush"]
INVLPG = VCPU_STAT["invlpg"]
HALT_WAKEUP = VCPU_STAT["halt_wakeup"]
HALT_WAIT_NS = VCPU_STAT["halt_wait_ns"]
HALT_WAIT_HIST = VCPU_STAT["halt_wait_hist"]
BLOCKING = VCPU_STAT["blocking"]
HYPERCALLS = VCPU_STAT["hypercalls"]
REQ_EVENT = VCPU_STAT["req_event"]


def new_vm_stat() -> np.ndarray:
    return np.zeros(VM_STAT_WORDS, np.int64)


def new_vcpu_stat(prefix=0) -> np.ndarray:
    """``struct kvm_vcpu_stat``; with ``prefix`` words in front of it (the run loop keeps
    its layout table there, so one array argument reaches the compiled exit path)."""
    return np.zeros(prefix + VCPU_STAT_WORDS, np.int64)


def log_hist_update(stat: np.ndarray, base: int, value: int) -> None:
    """``KVM_STATS_LOG_HIST_UPDATE``: bucket 0 = [0,1), bucket i = [2^(i-1), 2^i)."""
    i = int(value).bit_length()
    stat[base + min(i, 31)] += 1


def as_dict(stat: np.ndarray, storage) -> dict:
    """Name -> value (an int, or a list for histograms), for the kernel text view."""
    out = {}
    for d in storage:
        w = d.offset // 8
        out[d.name] = int(stat[w]) if d.size == 1 else [int(x) for x in stat[w:w + d.size]]
    return out


class StatsFile:
    """The anonymous file behind ``KVM_GET_STATS_FD`` (``kvm_vm_stats_fops``/``kvm_vcpu_stats_fops``).

    Holds a reference on the VM (``kvm_get_kvm``) until it is closed.
    """

    kind = "stats"

    def __init__(self, kvm, ident: str, descs, data: np.ndarray, refresh=None):
        self.kvm = kvm
        self.refresh = refresh
        self.ident = ident
        self.descs = descs
        self.data = data
        n = len(descs)
        self.desc_offset = HEADER_SIZE + NAME_SIZE
        self.data_offset = self.desc_offset + (16 + NAME_SIZE) * n
        parts = [struct.pack("<6I", 0, NAME_SIZE, n, HEADER_SIZE, self.desc_offset,
                             self.data_offset),
                 ident.encode()[:NAME_SIZE - 1].ljust(NAME_SIZE, b"\0")]
        for d in descs:
            parts.append(struct.pack("<IhHII", d.flags, d.exponent, d.size, d.offset,
                                     d.bucket_size))
            parts.append(d.name.encode().ljust(NAME_SIZE, b"\0"))
        self.static = b"".join(parts)

    def pread(self, length: int, offset: int) -> bytes:
        if length < 0 or offset < 0:
            raise OSError(errno.EINVAL, "pread on a stats fd needs a non-negative length and offset")
        if self.refresh is not None:
            self.refresh()
        blob = self.static + self.data.tobytes()
        return blob[offset:offset + length]

    def ioctl(self, request, arg):
        raise OSError(errno.ENOTTY, "a binary stats fd has no ioctls; read it with pread "
                                    "(header at offset 0, see reference §15)")

    def mmap(self, length, offset):
        raise OSError(errno.ENODEV, "a binary stats fd cannot be mmapped; read it with pread")

    def release(self):
        self.kvm.put()
