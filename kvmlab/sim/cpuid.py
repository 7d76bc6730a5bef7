"""arch/x86/kvm/cpuid.c: KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET_CPUID2.

``KVM_GET_SUPPORTED_CPUID`` reports what the (simulated) hardware *and* KVM can give a
guest: here, the teaching CPU that :mod:`kvmlab.cpu` implements, with the vendor string of
the chosen ``kvm_x86_ops`` flavour.  The guest's CPUID instruction answers from the table
userspace installs with KVM_SET_CPUID2; without one every leaf reads as zeros (no exit).
"""
from __future__ import annotations

import errno
import struct

KVM_MAX_CPUID_ENTRIES = 256
KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1
ENTRY = struct.Struct("<IIIIIII12x")       # struct kvm_cpuid_entry2 (40 bytes)

# leaf 1 EDX / ECX, leaf 0x80000001 EDX / ECX: the features the teaching CPU implements
F1_EDX = ((1 << 0) |    # FPU (x87 present; kvmlab.cpu treats x87 escapes as documented)
          (1 << 3) |    # PSE: 4 MiB pages
          (1 << 4) |    # TSC
          (1 << 5) |    # MSR: RDMSR/WRMSR
          (1 << 6) |    # PAE
          (1 << 8) |    # CX8: CMPXCHG8B
          (1 << 9) |    # APIC (the in-kernel LAPIC, once KVM_CREATE_IRQCHIP)
          (1 << 11) |   # SEP: SYSENTER/SYSEXIT
          (1 << 13) |   # PGE
          (1 << 15) |   # CMOV
          (1 << 16))    # PAT
F1_ECX = 1 << 31        # hypervisor present (KVM always sets it)
F81_EDX = ((1 << 11) |  # SYSCALL/SYSRET
           (1 << 20) |  # NX
           (1 << 29))   # LM: long mode
F81_ECX = 1 << 0        # LAHF/SAHF in long mode


def _regs4(s: bytes):
    return struct.unpack("<III", s)


def supported_cpuid(vendor: str):
    """The teaching CPU's table: list of (function, index, flags, eax, ebx, ecx, edx)."""
    if vendor == "amd":
        ven = b"AuthenticAMD"
        fms = 0x00A10F11
    else:
        ven = b"GenuineIntel"
        fms = 0x000806EC
    b, d, c = struct.unpack("<III", ven)        # vendor string order: ebx, edx, ecx
    brand = b"kvmlab teaching CPU".ljust(48, b"\0")
    bw = struct.unpack("<12I", brand)
    kb, kc, kd = struct.unpack("<III", b"KVMKVMKVM\0\0\0")
    t = [
        (0x0, 0, 0, 0x7, b, c, d),
        (0x1, 0, 0, fms, 0x00000800, F1_ECX, F1_EDX),
        (0x7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0, 0, 0),
        (0x40000000, 0, 0, 0x40000001, kb, kc, kd),
        (0x40000001, 0, 0, 0, 0, 0, 0),
        (0x80000000, 0, 0, 0x80000008, b if vendor == "amd" else 0,
         c if vendor == "amd" else 0, d if vendor == "amd" else 0),
        (0x80000001, 0, 0, fms if vendor == "amd" else 0, 0, F81_ECX, F81_EDX),
        (0x80000002, 0, 0) + bw[0:4],
        (0x80000003, 0, 0) + bw[4:8],
        (0x80000004, 0, 0) + bw[8:12],
        (0x80000008, 0, 0, 0x00003030, 0, 0, 0),   # 48-bit physical, 48-bit linear
    ]
    return t


def pack_entries(entries) -> bytes:
    return b"".join(ENTRY.pack(f, i, fl, a, b, c, d) for (f, i, fl, a, b, c, d) in entries)


def unpack_entries(buf, n):
    out = []
    for k in range(n):
        f, i, fl, a, b, c, d = ENTRY.unpack_from(buf, 8 + 40 * k)
        out.append((f, i, fl, a, b, c, d))
    return out


def write_cpuid2(buf, entries, what):
    """Fill a ``struct kvm_cpuid2`` buffer the way kvm_dev_ioctl_get_cpuid does."""
    nent = struct.unpack_from("<I", buf, 0)[0]
    if nent < 1 or nent < len(entries):
        raise OSError(errno.E2BIG, f"{what}: kvm_cpuid2.nent={nent} is too small for "
                      f"{len(entries)} entries; retry with a larger buffer "
                      "(kvm_cpuid2_with(256))")
    need = 8 + 40 * len(entries)
    if len(buf) < need:
        raise OSError(errno.EFAULT, f"{what}: the buffer holds {(len(buf) - 8) // 40} entries "
                      f"but nent says {nent}; size it with kvm_cpuid2_with(nent)")
    buf[8:need] = pack_entries(entries)
    struct.pack_into("<I", buf, 0, len(entries))
    return 0


def cpuid_lookup(entries, function, index):
    """The guest CPUID instruction (kvm_cpuid): exact match, else zeros."""
    for (f, i, fl, a, b, c, d) in entries:
        if f == function and (not (fl & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) or i == index):
            return a, b, c, d
    return 0, 0, 0, 0
