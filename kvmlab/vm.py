"""``VmFd``: a VM file descriptor (what KVM_CREATE_VM returns) and its ioctls."""
from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from . import hostmem, uapi
from .binstats import StatsFile
from .errors import KvmError
from .memory import PAGE_SIZE, GuestMemory
from .vcpu import VcpuFd


@dataclass(frozen=True)
class MemorySlot:
    """What userspace told KVM about one memslot (KVM keeps its own copy in struct kvm)."""
    slot: int
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    flags: int
    memory: object = None   # the GuestMemory that backs it, kept alive while the slot exists

    @property
    def end(self) -> int:
        return self.guest_phys_addr + self.memory_size

    def __repr__(self) -> str:
        fl = "|".join(n for b, n in ((1, "LOG_DIRTY_PAGES"), (2, "READONLY")) if self.flags & b) or "0"
        return f"MemorySlot(slot={self.slot}, gpa={self.guest_phys_addr:#x}-{self.end - 1:#x}, flags={fl})"


@dataclass(frozen=True)
class DirtyLog:
    """The result of KVM_GET_DIRTY_LOG: one bit per 4 KiB page of the slot."""
    slot: int
    npages: int
    bitmap: np.ndarray      # the u64 words as the kernel wrote them (ALIGN(npages, 64) / 64 words)

    @property
    def pages(self) -> list[int]:
        """Indices (within the slot) of the pages the guest wrote since the last call."""
        bits = np.unpackbits(self.bitmap.view(np.uint8), bitorder="little")[: self.npages]
        return [int(i) for i in np.flatnonzero(bits)]

    def __repr__(self) -> str:
        return f"DirtyLog(slot={self.slot}, dirty pages={self.pages})"


class VmFd:
    """A VM.  Create it with ``Kvm.create_vm()``."""

    def __init__(self, kvm, fd: int):
        self.kvm = kvm
        self.backend = kvm.backend
        self.fd = fd
        self.slots: dict[int, MemorySlot] = {}
        self.vcpus: dict[int, VcpuFd] = {}
        self._stats = None

    def _ioctl(self, name, request, arg=0, hint=None):
        try:
            return self.backend.ioctl(self.fd, request, arg)
        except OSError as e:
            raise KvmError(e.errno, name, hint(e.errno) if hint else None) from None

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on the VM fd (KVM_CAP_CHECK_EXTENSION_VM)."""
        return self._ioctl("KVM_CHECK_EXTENSION", uapi.KVM_CHECK_EXTENSION, int(cap))

    # memory -----------------------------------------------------------------------
    def set_user_memory_region(self, slot: int, guest_phys_addr: int = 0, memory: GuestMemory | None = None,
                               flags: int = 0, *, userspace_addr: int | None = None,
                               memory_size: int | None = None) -> None:
        """KVM_SET_USER_MEMORY_REGION on the VM fd: map host memory at a guest-physical address.

        ``memory`` is a :class:`kvmlab.GuestMemory` (its address and size are used), or give
        ``userspace_addr`` and ``memory_size`` explicitly.  ``memory_size=0`` deletes the slot.

        >>> vm = kvmlab.open("auto").create_vm()
        >>> mem = kvmlab.GuestMemory(0x10000)
        >>> vm.set_user_memory_region(0, 0x0, mem)
        >>> vm.set_user_memory_region(1, 0x8000, kvmlab.GuestMemory(0x1000))
        Traceback (most recent call last):
        ...
        kvmlab.errors.KvmError: KVM_SET_USER_MEMORY_REGION failed with EEXIST (File exists): slot 1 at 0x8000-0x8fff overlaps slot 0 at 0x0-0xffff: slots may not overlap; delete or move slot 0 first
        """
        if memory is not None:
            if userspace_addr is None:
                userspace_addr = memory.address
            if memory_size is None:
                memory_size = memory.size
        if userspace_addr is None or memory_size is None:
            if memory_size == 0:
                userspace_addr = userspace_addr or 0
            else:
                raise TypeError("give memory=GuestMemory(...) or both userspace_addr= and memory_size=")
        region = uapi.kvm_userspace_memory_region(slot=slot & 0xFFFFFFFF, flags=flags & 0xFFFFFFFF,
                                                  guest_phys_addr=guest_phys_addr & (2**64 - 1),
                                                  memory_size=memory_size & (2**64 - 1),
                                                  userspace_addr=userspace_addr & (2**64 - 1))

        def hint(err):
            if err == errno.EEXIST:
                end = guest_phys_addr + memory_size
                for s in self.slots.values():
                    if s.slot != slot and s.guest_phys_addr < end and guest_phys_addr < s.end:
                        return (f"slot {slot} at {guest_phys_addr:#x}-{end - 1:#x} overlaps slot {s.slot} at "
                                f"{s.guest_phys_addr:#x}-{s.end - 1:#x}: slots may not overlap; "
                                f"delete or move slot {s.slot} first")
            if err == errno.EINVAL:
                return _memslot_einval(slot, guest_phys_addr, memory_size, userspace_addr, flags,
                                       self.slots.get(slot))
            return None

        self._ioctl("KVM_SET_USER_MEMORY_REGION", uapi.KVM_SET_USER_MEMORY_REGION, region, hint)
        if memory_size == 0:
            self.slots.pop(slot, None)
        else:
            old = self.slots.get(slot)
            keep = memory if memory is not None else (old.memory if old and old.userspace_addr == userspace_addr else None)
            self.slots[slot] = MemorySlot(slot, guest_phys_addr, memory_size, userspace_addr, flags, keep)

    def get_dirty_log(self, slot: int) -> DirtyLog:
        """KVM_GET_DIRTY_LOG on the VM fd: which pages of ``slot`` the guest wrote since the
        last call (reading clears the log).  The slot needs ``KVM_MEM_LOG_DIRTY_PAGES``."""
        s = self.slots.get(slot)
        npages = s.memory_size // PAGE_SIZE if s else 64
        words = np.zeros(max(1, (npages + 63) // 64), dtype=np.uint64)
        raw = words.view(np.uint8)
        addr = hostmem.register(raw)
        try:
            log = uapi.kvm_dirty_log(slot=slot, dirty_bitmap=addr)
            self._ioctl("KVM_GET_DIRTY_LOG", uapi.KVM_GET_DIRTY_LOG, log)
        finally:
            hostmem.unregister(addr)
        return DirtyLog(slot, npages, words)

    # vCPUs ------------------------------------------------------------------------
    def create_vcpu(self, vcpu_id: int = 0) -> VcpuFd:
        """KVM_CREATE_VCPU on the VM fd: a vCPU with this id (its initial APIC id).

        >>> vm = kvmlab.open("auto").create_vm()
        >>> vcpu = vm.create_vcpu(0)
        >>> hex(vcpu.get_regs().rip)
        '0xfff0'
        """
        fd = self._ioctl("KVM_CREATE_VCPU", uapi.KVM_CREATE_VCPU, vcpu_id)
        vcpu = VcpuFd(self, fd, vcpu_id)
        self.vcpus[vcpu_id] = vcpu
        return vcpu

    # interrupts -------------------------------------------------------------------
    def create_irqchip(self) -> None:
        """KVM_CREATE_IRQCHIP on the VM fd: in-kernel PIC pair, IOAPIC, and a LAPIC per vCPU
        created afterwards.  Must come before the first vCPU."""
        self._ioctl("KVM_CREATE_IRQCHIP", uapi.KVM_CREATE_IRQCHIP)

    def get_irqchip(self, chip_id: int):
        """KVM_GET_IRQCHIP on the VM fd: the state of one in-kernel interrupt controller
        (``chip_id`` 0 = PIC master, 1 = PIC slave, 2 = IOAPIC) as a ``kvm_irqchip``; read
        ``.chip.pic`` or ``.chip.ioapic``."""
        chip = uapi.kvm_irqchip(chip_id=chip_id)
        self._ioctl("KVM_GET_IRQCHIP", uapi.KVM_GET_IRQCHIP, chip)
        return chip

    def create_pit2(self, flags: int = 0) -> None:
        """KVM_CREATE_PIT2 on the VM fd: an in-kernel 8254 PIT on ports 0x40-0x43 (needs the
        in-kernel irqchip).  ``flags=KVM_PIT_SPEAKER_DUMMY`` also handles port 0x61."""
        self._ioctl("KVM_CREATE_PIT2", uapi.KVM_CREATE_PIT2, uapi.kvm_pit_config(flags=flags))

    def irq_line(self, irq: int, level: int, status: bool = False):
        """KVM_IRQ_LINE (or KVM_IRQ_LINE_STATUS with ``status=True``, which returns the
        delivery status: >0 delivered, 0 masked/coalesced, -1 no route) on the VM fd."""
        arg = uapi.kvm_irq_level(irq=irq, level=level)
        if not status:
            self._ioctl("KVM_IRQ_LINE", uapi.KVM_IRQ_LINE, arg)
            return None
        self._ioctl("KVM_IRQ_LINE_STATUS", uapi.KVM_IRQ_LINE_STATUS, arg)
        return int(arg.status) if hasattr(arg, "status") else int(arg.irq)

    def irqfd(self, eventfd: int, gsi: int, flags: int = 0, resamplefd: int | None = None,
              deassign: bool = False) -> None:
        """KVM_IRQFD on the VM fd: writing to ``eventfd`` raises interrupt line ``gsi``
        without any exit.  With ``resamplefd`` the line is level-triggered and KVM signals
        ``resamplefd`` when the guest acknowledges it."""
        if resamplefd is not None:
            flags |= uapi.KVM_IRQFD_FLAG_RESAMPLE
        if deassign:
            flags |= uapi.KVM_IRQFD_FLAG_DEASSIGN
        arg = uapi.kvm_irqfd(fd=eventfd & 0xFFFFFFFF, gsi=gsi, flags=flags,
                             resamplefd=(resamplefd if resamplefd is not None else 0) & 0xFFFFFFFF)
        self._ioctl("KVM_IRQFD", uapi.KVM_IRQFD, arg)

    def ioeventfd(self, eventfd: int, addr: int, length: int, pio: bool = False,
                  datamatch: int | None = None, deassign: bool = False) -> None:
        """KVM_IOEVENTFD on the VM fd: a guest write of ``length`` bytes to ``addr`` (a port if
        ``pio``) signals ``eventfd`` inside the kernel instead of exiting.  ``length=0``
        matches any length; ``datamatch`` restricts it to one value."""
        flags = 0
        if datamatch is not None:
            flags |= uapi.KVM_IOEVENTFD_FLAG_DATAMATCH
        if pio:
            flags |= uapi.KVM_IOEVENTFD_FLAG_PIO
        if deassign:
            flags |= uapi.KVM_IOEVENTFD_FLAG_DEASSIGN
        arg = uapi.kvm_ioeventfd(datamatch=(datamatch or 0) & (2**64 - 1), addr=addr & (2**64 - 1),
                                 len=length & 0xFFFFFFFF, fd=eventfd, flags=flags)
        self._ioctl("KVM_IOEVENTFD", uapi.KVM_IOEVENTFD, arg)

    def register_coalesced_mmio(self, addr: int, size: int, pio: bool = False) -> None:
        """KVM_REGISTER_COALESCED_MMIO on the VM fd: guest writes inside the zone go to the
        ring (``VcpuFd.coalesced_ring``) instead of exiting; reads still exit."""
        zone = uapi.kvm_coalesced_mmio_zone(addr=addr, size=size)
        zone.pio = int(pio)
        self._ioctl("KVM_REGISTER_COALESCED_MMIO", uapi.KVM_REGISTER_COALESCED_MMIO, zone)

    def unregister_coalesced_mmio(self, addr: int, size: int, pio: bool = False) -> None:
        """KVM_UNREGISTER_COALESCED_MMIO on the VM fd: removes every zone inside the range."""
        zone = uapi.kvm_coalesced_mmio_zone(addr=addr, size=size)
        zone.pio = int(pio)
        self._ioctl("KVM_UNREGISTER_COALESCED_MMIO", uapi.KVM_UNREGISTER_COALESCED_MMIO, zone)

    # x86 odds ----------------------------------------------------------------------
    def set_tss_addr(self, addr: int) -> None:
        """KVM_SET_TSS_ADDR on the VM fd: 3 pages below 4 GiB that VMX may use for real mode."""
        self._ioctl("KVM_SET_TSS_ADDR", uapi.KVM_SET_TSS_ADDR, addr)

    def set_identity_map_addr(self, addr: int) -> None:
        """KVM_SET_IDENTITY_MAP_ADDR on the VM fd: one page below 4 GiB (VMX), before any vCPU."""
        import ctypes
        v = (ctypes.c_uint64 * 1)(addr)   # a u64 in memory; the ioctl takes its address
        self._ioctl("KVM_SET_IDENTITY_MAP_ADDR", uapi.KVM_SET_IDENTITY_MAP_ADDR, v)

    def set_boot_cpu_id(self, vcpu_id: int) -> None:
        """KVM_SET_BOOT_CPU_ID on the VM fd: which vCPU is the BSP (before any vCPU)."""
        self._ioctl("KVM_SET_BOOT_CPU_ID", uapi.KVM_SET_BOOT_CPU_ID, vcpu_id)

    # stats ------------------------------------------------------------------------
    def stats(self) -> dict:
        """KVM_GET_STATS_FD on the VM fd, decoded: stat name -> value."""
        if self._stats is None:
            fd = self._ioctl("KVM_GET_STATS_FD", uapi.KVM_GET_STATS_FD)
            self._stats = StatsFile(self.backend, fd)
        return self._stats.read()

    # sim only -----------------------------------------------------------------------
    @property
    def kernel(self):
        """The live ``struct kvm`` of this VM, read-only (simulated backend only)."""
        view = getattr(self.backend, "kernel_view", None)
        if view is None:
            raise AttributeError("struct kvm lives inside the real kernel; only the simulated backend "
                                 "(kvmlab.open('sim')) can show it")
        return view(self.fd)

    def close(self) -> None:
        """close() the VM fd.  The VM lives on while any of its vCPU fds is open."""
        if self._stats is not None:
            self._stats.close()
            self._stats = None
        if self.fd is not None:
            self.backend.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for v in list(self.vcpus.values()):
            v.close()
        self.close()

    def __repr__(self) -> str:
        return f"<VmFd backend={self.backend.name!r} slots={sorted(self.slots)} vcpus={sorted(self.vcpus)}>"


def _memslot_einval(slot, gpa, size, uaddr, flags, old) -> str:
    """Say which rule of KVM_SET_USER_MEMORY_REGION (reference §3.2) the request breaks."""
    sid = slot & 0xFFFF
    if slot >> 16:
        return f"slot {slot:#x} names address space {slot >> 16}; only address space 0 exists here: use slot ids 0..32763"
    if sid >= 32764:
        return f"slot id {sid} is too large: KVM_CAP_NR_MEMSLOTS is 32764, so use 0..32763"
    if flags & ~3:
        return f"flags {flags:#x} has unknown bits: only KVM_MEM_LOG_DIRTY_PAGES (1) and KVM_MEM_READONLY (2) exist"
    if gpa % PAGE_SIZE or size % PAGE_SIZE or uaddr % PAGE_SIZE:
        return "guest_phys_addr, memory_size and userspace_addr must all be multiples of 4096"
    if size == 0 and old is None:
        return f"slot {sid} does not exist, so it cannot be deleted"
    if old is not None and size:
        if size != old.memory_size:
            return f"slot {sid} exists with size {old.memory_size:#x}; a slot cannot be resized: delete it (size 0) and create it again"
        if uaddr != old.userspace_addr:
            return f"slot {sid} exists with another userspace_addr; delete it (size 0) and create it again"
        if (flags ^ old.flags) & 2:
            return f"KVM_MEM_READONLY cannot be added to or removed from existing slot {sid}; delete it and create it again"
    if gpa + size > 2**64 - 1 or gpa + size > 1 << 52:
        return "the slot would end above the guest-physical address limit (2^52)"
    if size >= 2**31 * PAGE_SIZE:
        return "a slot holds fewer than 2^31 pages"
    if uaddr >= 1 << 47:
        return "userspace_addr must be a user-space address (below 2^47)"
    return None
