"""Errors: the kernel's errno, the ioctl that returned it, and a sentence that says what to do.

kvmlab never invents an errno: a :class:`KvmError` is raised exactly when the ioctl failed
(on ``/dev/kvm``, or in the simulated kernel with the errno real KVM returns), and it
carries that errno.  What kvmlab adds is the explanation.
"""
from __future__ import annotations

import errno as _errno
import os

# (ioctl name, errno) -> what to do.  Context-specific sentences (which slot overlaps, ...)
# are built by the API methods that know the context; these are the fallbacks.
_HINTS: dict[tuple[str, int], str] = {
    ("KVM_CREATE_VM", _errno.EINVAL): "the VM type must be 0 (KVM_X86_DEFAULT_VM) on x86",
    ("KVM_CREATE_VCPU", _errno.EEXIST): "a vCPU with this id already exists in the VM; pick another id",
    ("KVM_CREATE_VCPU", _errno.EINVAL): "vCPU ids go from 0 to KVM_CAP_MAX_VCPU_ID-1 (4095) and a VM holds at most KVM_CAP_MAX_VCPUS (1024) vCPUs",
    ("KVM_SET_USER_MEMORY_REGION", _errno.EINVAL): "guest_phys_addr, memory_size and userspace_addr must be multiples of 4096, the slot id below KVM_CAP_NR_MEMSLOTS, flags only LOG_DIRTY_PAGES|READONLY; an existing slot can only be moved, deleted (size 0) or have LOG_DIRTY_PAGES toggled",
    ("KVM_SET_USER_MEMORY_REGION", _errno.EEXIST): "the new slot overlaps an existing slot; slots may not overlap: delete or move the other slot first",
    ("KVM_GET_DIRTY_LOG", _errno.ENOENT): "the slot does not exist or was created without KVM_MEM_LOG_DIRTY_PAGES; set that flag on the slot first",
    ("KVM_GET_DIRTY_LOG", _errno.EINVAL): "the slot id is out of range (0..KVM_CAP_NR_MEMSLOTS-1)",
    ("KVM_GET_DIRTY_LOG", _errno.EFAULT): "the bitmap pointer does not point at writable memory of ALIGN(npages, 64)/8 bytes",
    ("KVM_CREATE_IRQCHIP", _errno.EEXIST): "the VM already has an in-kernel irqchip",
    ("KVM_CREATE_IRQCHIP", _errno.EINVAL): "create the irqchip before the first vCPU",
    ("KVM_CREATE_PIT2", _errno.ENOENT): "the PIT needs the in-kernel irqchip: call create_irqchip() first",
    ("KVM_CREATE_PIT2", _errno.EEXIST): "the VM already has an in-kernel PIT",
    ("KVM_IRQ_LINE", _errno.ENXIO): "KVM_IRQ_LINE needs an in-kernel irqchip: call create_irqchip() before creating vCPUs",
    ("KVM_IRQ_LINE_STATUS", _errno.ENXIO): "KVM_IRQ_LINE_STATUS needs an in-kernel irqchip: call create_irqchip() before creating vCPUs",
    ("KVM_IRQFD", _errno.EINVAL): "irqfd needs an in-kernel irqchip (create_irqchip()), an eventfd, and only the DEASSIGN/RESAMPLE flags",
    ("KVM_IRQFD", _errno.EBUSY): "this eventfd is already bound to a GSI; deassign it first",
    ("KVM_IRQFD", _errno.EBADF): "the fd (or resamplefd) is not an open file descriptor; pass an os.eventfd()",
    ("KVM_IOEVENTFD", _errno.EINVAL): "length must be 0, 1, 2, 4 or 8 (0 without datamatch), flags only DATAMATCH|PIO|DEASSIGN, and addr+length must not wrap",
    ("KVM_IOEVENTFD", _errno.EEXIST): "an ioeventfd with the same address, length and datamatch is already registered; deassign it first",
    ("KVM_IOEVENTFD", _errno.ENOENT): "no ioeventfd with this address, length, datamatch and fd is registered, so there is nothing to deassign",
    ("KVM_IOEVENTFD", _errno.EBADF): "the fd is not an open file descriptor; pass an os.eventfd()",
    ("KVM_REGISTER_COALESCED_MMIO", _errno.EINVAL): "zone.pio must be 0 (MMIO) or 1 (PIO)",
    ("KVM_REGISTER_COALESCED_MMIO", _errno.ENOSPC): "the I/O bus is full (at most 1000 devices); unregister some zones first",
    ("KVM_SET_TSS_ADDR", _errno.EINVAL): "the 3-page TSS region must lie below 4 GiB (addr <= 0xFFFFD000)",
    ("KVM_SET_IDENTITY_MAP_ADDR", _errno.EINVAL): "set the identity map address before creating any vCPU",
    ("KVM_SET_BOOT_CPU_ID", _errno.EBUSY): "set the boot CPU id before creating any vCPU",
    ("KVM_SET_SREGS", _errno.EINVAL): "the control registers are inconsistent (e.g. CR0.PG without CR0.PE, EFER.LME with paging but without CR4.PAE, reserved bits set)",
    ("KVM_SET_CPUID2", _errno.EINVAL): "the CPUID table cannot change after the vCPU has run",
    ("KVM_SET_CPUID2", _errno.E2BIG): "too many CPUID entries (at most 256)",
    ("KVM_GET_SUPPORTED_CPUID", _errno.E2BIG): "the buffer is too small; retry with more entries",
    ("KVM_GET_MSR_INDEX_LIST", _errno.E2BIG): "the buffer is too small; the kernel wrote the needed count into nmsrs",
    ("KVM_GET_MSRS", _errno.E2BIG): "at most 255 MSRs per call",
    ("KVM_SET_MSRS", _errno.E2BIG): "at most 255 MSRs per call",
    ("KVM_INTERRUPT", _errno.ENXIO): "with an in-kernel irqchip, raise interrupts with irq_line() or an irqfd instead of KVM_INTERRUPT",
    ("KVM_INTERRUPT", _errno.EINVAL): "the vector must be below 256",
    ("KVM_SET_GUEST_DEBUG", _errno.EBUSY): "an exception is already pending; run the vCPU once before injecting another",
    ("KVM_RUN", _errno.ENOSPC): "the VM has no memory slot; add one with set_user_memory_region() first",
    ("KVM_RUN", _errno.EFAULT): "a memory slot points at host memory that is not mapped; back it with kvmlab.GuestMemory",
    ("KVM_RUN", _errno.EINVAL): "kvm_valid_regs/kvm_dirty_regs have unknown bits, or the vCPU state is invalid",
}


class KvmError(OSError):
    """An ioctl failed: ``errno``, the ``ioctl`` name, and what to do about it."""

    def __init__(self, err: int, ioctl: str, hint: str | None = None):
        self.ioctl = ioctl
        self.hint = hint or _HINTS.get((ioctl, err)) or ""
        name = _errno.errorcode.get(err, str(err))
        text = f"{ioctl} failed with {name} ({os.strerror(err)})"
        if self.hint:
            text += f": {self.hint}"
        super().__init__(err, text)

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return (type(self), (self.errno, self.ioctl, self.hint))


class BackendUnavailable(RuntimeError):
    """The requested KVM backend cannot be used here; the message says why and what to use instead."""
