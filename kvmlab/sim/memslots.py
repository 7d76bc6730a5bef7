"""virt/kvm/kvm_main.c (__kvm_set_memory_region, kvm_get_dirty_log) + arch/x86/kvm/x86.c
(kvm_arch_prepare_memory_region): memory slots.

A memslot maps guest frames ``[base_gfn, base_gfn + npages)`` to host memory at
``userspace_addr``.  The host memory belongs to userspace; the simulated kernel reaches it
only through :mod:`kvmlab.hostmem` (its ``get_user_pages``), keeps a reference to the
buffer while the slot exists, and hands it to the CPU core's ``PhysMap`` (the "EPT/NPT").

Every update goes through the kernel's validation in the kernel's order, so each bad
request fails with the kernel's errno (reference §3.2).  ``kvm->slots_lock`` serialises
updates; each update bumps ``memslots.generation`` as the kernel does (that is how
cached MMIO translations learn that the map changed).
"""
from __future__ import annotations

import errno

import numpy as np

from .. import hostmem
from .. import uapi as U

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
KVM_USER_MEM_SLOTS = 32764
KVM_ADDRESS_SPACE_NUM = 1          # no KVM_CAP_MULTI_ADDRESS_SPACE (no SMM) in the sim
KVM_MEM_MAX_NR_PAGES = (1 << 31) - 1
MAX_GPA_BITS = 52                  # kvm_mmu_max_gfn() = 2^40 - 1
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE
VALID_FLAGS = U.KVM_MEM_LOG_DIRTY_PAGES | U.KVM_MEM_READONLY

KVM_MR_CREATE, KVM_MR_DELETE, KVM_MR_MOVE, KVM_MR_FLAGS_ONLY = range(4)
CHANGE_NAMES = ("KVM_MR_CREATE", "KVM_MR_DELETE", "KVM_MR_MOVE", "KVM_MR_FLAGS_ONLY")


class KvmMemorySlot:
    """``struct kvm_memory_slot``."""
    __slots__ = ("id", "as_id", "base_gfn", "npages", "flags", "userspace_addr",
                 "dirty_bitmap", "host")

    def __init__(self, id_, as_id, base_gfn, npages, flags, userspace_addr):
        self.id, self.as_id = id_, as_id
        self.base_gfn, self.npages, self.flags = base_gfn, npages, flags
        self.userspace_addr = userspace_addr
        self.dirty_bitmap = None     # np.uint64 words, only with KVM_MEM_LOG_DIRTY_PAGES
        self.host = None             # np.uint8 view of the host memory, None if unknown

    @property
    def guest_phys_addr(self):
        return self.base_gfn << PAGE_SHIFT

    @property
    def memory_size(self):
        return self.npages << PAGE_SHIFT

    def dirty_bitmap_bytes(self):
        """``kvm_dirty_bitmap_bytes``: ALIGN(npages, BITS_PER_LONG) / 8."""
        return ((self.npages + 63) // 64) * 8

    def flag_names(self):
        names = []
        if self.flags & U.KVM_MEM_LOG_DIRTY_PAGES:
            names.append("LOG_DIRTY_PAGES")
        if self.flags & U.KVM_MEM_READONLY:
            names.append("READONLY")
        return "|".join(names) or "0"

    def __repr__(self):
        end = (self.base_gfn + self.npages) << PAGE_SHIFT
        host = "" if self.host is not None else " (host memory not registered)"
        return (f"slot {self.id}: gpa [{self.guest_phys_addr:#x}, {end:#x}) "
                f"npages={self.npages} flags={self.flag_names()} "
                f"userspace_addr={self.userspace_addr:#x}{host}")


class KvmMemslots:
    """``struct kvm_memslots`` for one address space."""

    def __init__(self):
        self.generation = 0
        self.id_hash: dict[int, KvmMemorySlot] = {}

    def by_gpa(self):
        return sorted(self.id_hash.values(), key=lambda s: s.base_gfn)

    def gfn_to_memslot(self, gfn):
        for s in self.id_hash.values():
            if s.base_gfn <= gfn < s.base_gfn + s.npages:
                return s
        return None

    def __len__(self):
        return len(self.id_hash)


def _einval(msg):
    return OSError(errno.EINVAL, msg)


def kvm_set_memory_region(kvm, slot, flags, guest_phys_addr, memory_size, userspace_addr):
    """``kvm_vm_ioctl_set_memory_region`` -> ``__kvm_set_memory_region``, under slots_lock."""
    with kvm.slots_lock:
        return _set_memory_region(kvm, slot, flags, guest_phys_addr, memory_size, userspace_addr)


def _set_memory_region(kvm, slot, flags, gpa, size, uaddr):
    if flags & ~VALID_FLAGS:
        raise _einval(f"unknown memory region flags {flags:#x}; valid are "
                      "KVM_MEM_LOG_DIRTY_PAGES (1) and KVM_MEM_READONLY (2)")
    as_id, id_ = slot >> 16, slot & 0xFFFF
    if size & (PAGE_SIZE - 1):
        raise _einval(f"memory_size {size:#x} is not a multiple of the 4 KiB page size")
    if gpa & (PAGE_SIZE - 1):
        raise _einval(f"guest_phys_addr {gpa:#x} is not 4 KiB aligned")
    if uaddr & (PAGE_SIZE - 1):
        raise _einval(f"userspace_addr {uaddr:#x} is not 4 KiB aligned; use memory from "
                      "kvmlab.GuestMemory (page aligned)")
    if uaddr + size > TASK_SIZE_MAX:
        raise _einval(f"userspace_addr {uaddr:#x} + memory_size {size:#x} is not a user-space "
                      "address range (access_ok failed)")
    if as_id >= KVM_ADDRESS_SPACE_NUM or id_ >= KVM_USER_MEM_SLOTS:
        raise _einval(f"slot {slot:#x} out of range: slot ids are 0..{KVM_USER_MEM_SLOTS - 1} "
                      "and address space 0 (bits 16-31 must be 0)")
    if gpa + size > 0xFFFFFFFFFFFFFFFF:
        raise _einval("guest_phys_addr + memory_size wraps around 2^64")
    npages = size >> PAGE_SHIFT
    if npages > KVM_MEM_MAX_NR_PAGES:
        raise _einval(f"memory_size {size:#x} is too large: at most 2^31-1 pages per slot")
    slots = kvm.memslots
    old = slots.id_hash.get(id_)
    if not size:
        if old is None:
            raise _einval(f"slot {id_} does not exist, so it cannot be deleted (memory_size 0 "
                          "means delete)")
        _commit(kvm, old, None, KVM_MR_DELETE)
        return 0
    base_gfn = gpa >> PAGE_SHIFT
    if old is None:
        change = KVM_MR_CREATE
    else:
        if uaddr != old.userspace_addr:
            raise _einval(f"slot {id_} exists: its userspace_addr cannot change; delete the slot "
                          "(memory_size 0) and create it again")
        if npages != old.npages:
            raise _einval(f"slot {id_} exists: it cannot be resized; delete it (memory_size 0) "
                          "and create it again")
        if (flags ^ old.flags) & U.KVM_MEM_READONLY:
            raise _einval(f"slot {id_} exists: KVM_MEM_READONLY cannot be toggled; delete and "
                          "recreate the slot")
        if base_gfn != old.base_gfn:
            change = KVM_MR_MOVE
        elif flags != old.flags:
            change = KVM_MR_FLAGS_ONLY
        else:
            return 0
    if change in (KVM_MR_CREATE, KVM_MR_MOVE):
        for s in slots.id_hash.values():
            if s.id == id_:
                continue
            if base_gfn < s.base_gfn + s.npages and s.base_gfn < base_gfn + npages:
                raise OSError(errno.EEXIST, f"gpa [{gpa:#x}, {gpa + size:#x}) overlaps {s!r}; "
                                            "memslots must not overlap")
        # kvm_arch_prepare_memory_region
        if base_gfn + npages - 1 > (1 << (MAX_GPA_BITS - PAGE_SHIFT)) - 1:
            raise _einval(f"the slot would end at {gpa + size:#x}, above the 2^{MAX_GPA_BITS} "
                          "guest physical address limit")
    new = KvmMemorySlot(id_, as_id, base_gfn, npages, flags, uaddr)
    if change == KVM_MR_CREATE:
        new.host = hostmem.lookup(uaddr, size)
    else:
        new.host = old.host
    if flags & U.KVM_MEM_LOG_DIRTY_PAGES:
        if old is not None and old.dirty_bitmap is not None and change == KVM_MR_FLAGS_ONLY:
            new.dirty_bitmap = old.dirty_bitmap
        elif old is not None and old.dirty_bitmap is not None and change == KVM_MR_MOVE:
            new.dirty_bitmap = old.dirty_bitmap
        else:
            new.dirty_bitmap = np.zeros((npages + 63) // 64, np.uint64)
    _commit(kvm, old, new, change)
    return 0


def _commit(kvm, old, new, change):
    """``kvm_set_memslot`` + ``kvm_arch_commit_memory_region``: publish the new map."""
    slots = kvm.memslots
    if old is not None:
        del slots.id_hash[old.id]
    if new is not None:
        slots.id_hash[new.id] = new
    slots.generation += 1
    kvm.arch.commit_memory_region(old, new, change)
    tr = kvm.trace
    if tr.on:
        tr.emit(None, "kvm_set_user_memory_region", change=CHANGE_NAMES[change],
                slot=(new or old).id, gpa=(new or old).guest_phys_addr,
                size=(new.memory_size if new else 0))


def kvm_get_dirty_log(kvm, slot, bitmap_ptr):
    as_id, id_ = slot >> 16, slot & 0xFFFF
    if as_id >= KVM_ADDRESS_SPACE_NUM or id_ >= KVM_USER_MEM_SLOTS:
        raise _einval(f"slot {slot:#x} out of range: slot ids are 0..{KVM_USER_MEM_SLOTS - 1}")
    with kvm.slots_lock:
        ms = kvm.memslots.id_hash.get(id_)
        if ms is None or ms.dirty_bitmap is None:
            raise OSError(errno.ENOENT, f"slot {id_} " + ("does not exist" if ms is None else
                          "was not created with KVM_MEM_LOG_DIRTY_PAGES") +
                          "; dirty logging needs a slot with that flag")
        n = ms.dirty_bitmap_bytes()
        dst = hostmem.lookup(bitmap_ptr, n)
        if dst is None:
            raise OSError(errno.EFAULT, f"dirty_bitmap {bitmap_ptr:#x} is not {n} bytes of "
                          "memory kvmlab knows; pass a buffer of ALIGN(npages, 64)/8 bytes "
                          "registered with kvmlab.hostmem (e.g. a GuestMemory or numpy array)")
        bm = ms.dirty_bitmap
        snap = bm.copy()          # kvm_get_dirty_log_protect: xchg each word with 0
        bm &= ~snap
        dst[:] = snap.view(np.uint8)
    return 0
