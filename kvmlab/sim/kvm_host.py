"""include/linux/kvm_host.h: ``struct kvm`` and ``struct kvm_vcpu``, and the global vm_list.

These are the kernel objects behind the file descriptors.  A learner reads them through
``vm.kernel`` (a read-only view, see :mod:`.kernel_view`); the kernel code mutates them.

Locking, as in the kernel (``Documentation/virt/kvm/locking.rst``):

=====================  =================================================================
``kvm_lock``           the global ``vm_list``
``kvm->lock``          vCPU creation (``created_vcpus``, ``online_vcpus``, ``vcpu_array``),
                       irqchip creation, ``bsp_vcpu_id``, ``arch`` setup ioctls
``kvm->slots_lock``    memslot updates, io-bus registration (ioeventfds, coalesced zones)
``kvm->irq_lock``      irq routing, the in-kernel irqchip's state
``kvm->irqfds.lock``   the irqfd list
``kvm->ring_lock``     the coalesced MMIO ring's ``last`` index
``kvm->locked_insn``   (kvmlab's own) guest memory during one LOCKed read-modify-write or
                       XCHG: a vCPU holds it while its core runs that one instruction
                       (``x86_run._locked_step``), never across an exit to userspace
``vcpu->mutex``        every vCPU ioctl (KVM_RUN holds it while the guest runs)
=====================  =================================================================
"""
from __future__ import annotations

import mmap as _mmap
import os
import threading

import numpy as np

from . import stats as S
from .eventfd import KvmIrqfds
from .iobus import KVM_NR_BUSES, KvmIoBus
from .memslots import KvmMemslots
from .trace import Trace

KVM_MAX_VCPUS = 1024
KVM_MAX_VCPU_IDS = 4096
PAGE_SIZE = 4096

kvm_lock = threading.Lock()
vm_list: list["Kvm"] = []          # every live struct kvm in this "host", guarded by kvm_lock


class Kvm:
    """``struct kvm``: one virtual machine."""

    def __init__(self, vm_type: int, vendor):
        self.lock = threading.RLock()
        self.slots_lock = threading.RLock()
        self.irq_lock = threading.RLock()
        self.ring_lock = threading.Lock()
        self.locked_insn = threading.Lock()
        self.vm_type = vm_type
        self.memslots = KvmMemslots()
        self.vcpu_array: dict[int, "KvmVcpu"] = {}       # vcpu_idx -> vcpu (xarray)
        self.created_vcpus = 0
        self.online_vcpus = 0
        self.max_vcpus = KVM_MAX_VCPUS
        self.buses = [KvmIoBus() for _ in range(KVM_NR_BUSES)]
        self.irqfds = KvmIrqfds(self)
        self.ioeventfds = []
        self.coalesced_zones = []
        self.irq_routing = None
        self.stat = S.new_vm_stat()
        self.users_count = 1
        self.userspace_pid = os.getpid()
        self.stats_id = f"kvm-{self.userspace_pid}"
        self.trace = Trace()
        self.destroyed = False
        # the coalesced ring: one page of shared memory, mapped into every vCPU's mmap
        self._ring_memfd = os.memfd_create("kvm-coalesced-mmio-ring", os.MFD_CLOEXEC)
        os.ftruncate(self._ring_memfd, PAGE_SIZE)
        self._ring_map = _mmap.mmap(self._ring_memfd, PAGE_SIZE)
        self.coalesced_mmio_ring = np.frombuffer(self._ring_map, np.uint8)
        from .x86 import KvmArch          # arch/x86: struct kvm_arch
        self.arch = KvmArch(self, vendor)
        with kvm_lock:
            vm_list.append(self)

    # -- bsp ---------------------------------------------------------------------------
    @property
    def bsp_vcpu_id(self):
        return self.arch.bsp_vcpu_id

    # -- users_count: kvm_get_kvm / kvm_put_kvm ---------------------------------------
    def get(self):
        with self.lock:
            self.users_count += 1

    def put(self):
        with self.lock:
            self.users_count -= 1
            last = self.users_count == 0
        if last:
            self._destroy()

    def _destroy(self):
        """``kvm_destroy_vm``: the last fd referring to the VM was closed."""
        with kvm_lock:
            if self in vm_list:
                vm_list.remove(self)
        self.destroyed = True
        self.irqfds.shutdown()
        with self.slots_lock:
            for p in self.ioeventfds:
                p.eventfd.put()
            self.ioeventfds = []
        self.arch.destroy()
        try:
            os.close(self._ring_memfd)
        except OSError:
            pass

    # -- vcpus -------------------------------------------------------------------------
    def get_vcpu_by_id(self, vcpu_id):
        for v in self.vcpu_array.values():
            if v.vcpu_id == vcpu_id:
                return v
        return None

    def vcpus(self):
        return [self.vcpu_array[i] for i in sorted(self.vcpu_array)]

    # -- interrupts ----------------------------------------------------------------------
    def set_irq(self, irq_source_id, gsi, level):
        """``kvm_set_irq``: drive GSI ``gsi`` through the routing table; returns the sum of
        the per-chip results (>0 delivered, 0 coalesced/masked, -1 no route)."""
        return self.arch.set_irq(irq_source_id, gsi, level)

    def arch_ack_irq(self, gsi):
        """``kvm_notify_acked_irq``: the guest acknowledged GSI ``gsi`` (PIC or IOAPIC EOI);
        run the ack notifiers (resampling irqfds)."""
        self.arch.ack_irq(gsi)

    def arch_kick_bsp(self):
        """The PIC's INT output rose: wake the vCPU whose LINT0 it is wired to."""
        self.arch.kick_bsp()

    def __repr__(self):
        return f"<struct kvm {self.stats_id} users_count={self.users_count}>"


class KvmVcpu:
    """``struct kvm_vcpu``: one virtual CPU; its ``run`` page is what userspace mmaps."""

    def __init__(self, kvm: Kvm, vcpu_id: int, vcpu_idx: int):
        self.kvm = kvm
        self.vcpu_id = vcpu_id
        self.vcpu_idx = vcpu_idx
        self.mutex = threading.Lock()
        from .kvm_run import LAY
        # [layout table | struct kvm_vcpu_stat]: the compiled exit path gets both in one array
        self.statbuf = S.new_vcpu_stat(len(LAY))
        self.statbuf[:len(LAY)] = LAY
        self.stat = self.statbuf[len(LAY):]
        self.stats_id = f"{kvm.stats_id}/vcpu-{vcpu_id}"
        self.pid = None                   # the thread that last ran KVM_RUN
        self.mode = "OUTSIDE_GUEST_MODE"
        self.requests = 0
        self.sigset = None
        self.run_map = _new_vcpu_mapping(kvm)
        self.run_buf = np.frombuffer(self.run_map, np.uint8)     # the whole 3-page mapping
        self.guest_debug = 0
        from .x86 import KvmVcpuArch
        self.arch = KvmVcpuArch(self)

    def __repr__(self):
        return f"<struct kvm_vcpu id={self.vcpu_id} idx={self.vcpu_idx}>"


# --------------------------------------------------------------------------------------
# the vCPU mapping: kvm_run (page 0), PIO data (page 1), the VM's coalesced ring (page 2)
# --------------------------------------------------------------------------------------
import ctypes as _ct

_libc = _ct.CDLL(None, use_errno=True)
_libc.mmap.restype = _ct.c_void_p
_libc.mmap.argtypes = [_ct.c_void_p, _ct.c_size_t, _ct.c_int, _ct.c_int, _ct.c_int, _ct.c_long]
_MAP_FIXED = 0x10


def _new_vcpu_mapping(kvm: Kvm):
    """Three pages of memory; page 2 is the VM's ring page mapped a second time (MAP_FIXED
    over the memfd), so every vCPU's mapping shows literally the same ring, as in the
    kernel's ``kvm_vcpu_fault``."""
    m = _mmap.mmap(-1, 3 * PAGE_SIZE)
    c = _ct.c_char.from_buffer(m)
    base = _ct.addressof(c)
    del c
    r = _libc.mmap(base + 2 * PAGE_SIZE, PAGE_SIZE, _mmap.PROT_READ | _mmap.PROT_WRITE,
                   _mmap.MAP_SHARED | _MAP_FIXED, kvm._ring_memfd, 0)
    if r != base + 2 * PAGE_SIZE:
        err = _ct.get_errno()
        raise OSError(err, "could not map the coalesced ring into the vCPU mapping")
    return m
