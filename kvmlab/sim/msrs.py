"""arch/x86/kvm/x86.c (msrs_to_save, msr_io, kvm_get_msr_common): MSR lists and GET/SET_MSRS.

``KVM_GET_MSR_INDEX_LIST`` lists the MSRs a VMM must save and restore (those that are
not part of kvm_sregs).  ``KVM_GET_MSRS``/``KVM_SET_MSRS`` process entries in order and
return how many succeeded: processing stops at the first MSR that is unknown or whose
value is invalid, with no errno (reference §6).
"""
from __future__ import annotations

import errno
import struct

MAX_IO_MSRS = 256

MSR_IA32_TSC = 0x10
MSR_IA32_APICBASE = 0x1B
MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP = 0x174, 0x175, 0x176
MSR_IA32_MISC_ENABLE = 0x1A0
MSR_IA32_CR_PAT = 0x277
MSR_MTRRdefType = 0x2FF
MSR_EFER = 0xC0000080
MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK = 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084
MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE = 0xC0000100, 0xC0000101, 0xC0000102
MSR_TSC_AUX = 0xC0000103
MSR_IA32_TSC_ADJUST = 0x3B
MSR_IA32_SPEC_CTRL = 0x48
MSR_IA32_DEBUGCTLMSR = 0x1D9

# msrs_to_save: what KVM_GET_MSR_INDEX_LIST reports (EFER, FS/GS base and APIC_BASE are
# readable through KVM_GET_MSRS but live in kvm_sregs, so they are not listed)
MSRS_TO_SAVE = [MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
                MSR_STAR, MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_SYSCALL_MASK, MSR_LSTAR,
                MSR_IA32_TSC, MSR_IA32_CR_PAT, MSR_TSC_AUX, MSR_IA32_TSC_ADJUST,
                MSR_IA32_MISC_ENABLE, MSR_MTRRdefType, MSR_IA32_DEBUGCTLMSR,
                0x17A, 0x17B]                     # MCG_STATUS, MCG_CTL
# feature MSRs (KVM_GET_MSR_FEATURE_INDEX_LIST): none in the teaching CPU
MSR_FEATURES: list[int] = []


def write_msr_list(buf, indices, what):
    """``struct kvm_msr_list {u32 nmsrs; u32 indices[]}``: E2BIG (with the needed count
    written to nmsrs) if too small."""
    n = struct.unpack_from("<I", buf, 0)[0]
    struct.pack_into("<I", buf, 0, len(indices))
    if n < len(indices):
        raise OSError(errno.E2BIG, f"{what}: nmsrs={n} is too small; the kernel wrote the "
                      f"needed count ({len(indices)}) into nmsrs, retry with that")
    need = 4 + 4 * len(indices)
    if len(buf) < need:
        raise OSError(errno.EFAULT, f"{what}: buffer too small for {len(indices)} indices")
    struct.pack_into(f"<{len(indices)}I", buf, 4, *indices)
    return 0


def msr_io(buf, do_msr, writeback):
    """``msr_io``: header {nmsrs, pad}, then entries {u32 index, u32 reserved, u64 data}.
    ``do_msr(index, data) -> (ok, data)``.  Returns the count processed."""
    nmsrs = struct.unpack_from("<I", buf, 0)[0]
    if nmsrs >= MAX_IO_MSRS:
        raise OSError(errno.E2BIG, f"kvm_msrs.nmsrs={nmsrs}: at most {MAX_IO_MSRS - 1} MSRs per "
                                   "call; split the request")
    if len(buf) < 8 + 16 * nmsrs:
        raise OSError(errno.EFAULT, f"kvm_msrs.nmsrs={nmsrs} but the buffer holds "
                      f"{(len(buf) - 8) // 16} entries; size it with kvm_msrs_with(n)")
    i = 0
    while i < nmsrs:
        off = 8 + 16 * i
        index, _, data = struct.unpack_from("<IIQ", buf, off)
        ok, data = do_msr(index, data)
        if not ok:
            break
        if writeback:
            struct.pack_into("<Q", buf, off + 8, data & 0xFFFFFFFFFFFFFFFF)
        i += 1
    return i
