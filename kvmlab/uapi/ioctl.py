"""ioctl request numbers of <linux/kvm.h> (x86-64), encoded like <asm-generic/ioctl.h>.

A request number packs direction, argument size, type (KVMIO = 0xAE) and number:
``dir << 30 | size << 16 | type << 8 | nr``.  Direction is from userspace's view:
_IOW = userspace writes (kernel reads), _IOR = kernel writes back.

>>> hex(KVM_GET_REGS), hex(_IOR(KVMIO, 0x81, kvm_regs))
('0x8090ae81', '0x8090ae81')
>>> ioctl_name(0x4020AE46)
'KVM_SET_USER_MEMORY_REGION'
>>> _IOC_DIR(KVM_GET_REGS), _IOC_SIZE(KVM_GET_REGS), hex(_IOC_NR(KVM_GET_REGS))
(2, 144, '0x81')
"""
from __future__ import annotations

import ctypes

from .structs import (
    kvm_clear_dirty_log,
    kvm_clock_data,
    kvm_coalesced_mmio_zone,
    kvm_cpuid,
    kvm_cpuid2,
    kvm_create_device,
    kvm_debugregs,
    kvm_device_attr,
    kvm_dirty_log,
    kvm_enable_cap,
    kvm_fpu,
    kvm_guest_debug,
    kvm_interrupt,
    kvm_ioeventfd,
    kvm_irq_level,
    kvm_irq_routing,
    kvm_irqchip,
    kvm_irqfd,
    kvm_lapic_state,
    kvm_memory_region,
    kvm_mp_state,
    kvm_msi,
    kvm_msr_filter,
    kvm_msr_list,
    kvm_msrs,
    kvm_one_reg,
    kvm_pit_config,
    kvm_pit_state,
    kvm_pit_state2,
    kvm_regs,
    kvm_signal_mask,
    kvm_sregs,
    kvm_sregs2,
    kvm_tpr_access_ctl,
    kvm_translation,
    kvm_userspace_memory_region,
    kvm_userspace_memory_region2,
    kvm_vapic_addr,
    kvm_vcpu_events,
    kvm_x86_mce,
    kvm_xcrs,
    kvm_xsave,
)

# <asm-generic/ioctl.h>
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS, _IOC_DIRBITS = 8, 8, 14, 2
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(dir: int, type: int, nr: int, size: int) -> int:
    if not 0 <= size < (1 << _IOC_SIZEBITS):
        raise ValueError(f"ioctl argument size {size} does not fit in {_IOC_SIZEBITS} bits")
    return (dir << _IOC_DIRSHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _size(t) -> int:
    return t if isinstance(t, int) else ctypes.sizeof(t)


def _IO(type: int, nr: int) -> int:
    return _IOC(_IOC_NONE, type, nr, 0)


def _IOR(type: int, nr: int, t) -> int:
    return _IOC(_IOC_READ, type, nr, _size(t))


def _IOW(type: int, nr: int, t) -> int:
    return _IOC(_IOC_WRITE, type, nr, _size(t))


def _IOWR(type: int, nr: int, t) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type, nr, _size(t))


def _IOC_DIR(req: int) -> int:
    return (req >> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1)


def _IOC_TYPE(req: int) -> int:
    return (req >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


def _IOC_NR(req: int) -> int:
    return (req >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def _IOC_SIZE(req: int) -> int:
    return (req >> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1)


KVMIO = 0xAE
_u64 = ctypes.c_uint64

# ---- ioctls for /dev/kvm (system fd) -------------------------------------------------
KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
KVM_CREATE_VM = _IO(KVMIO, 0x01)  # arg: machine type (0); returns a VM fd
KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, kvm_msr_list)
KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)  # also on VM fds (KVM_CAP_CHECK_EXTENSION_VM)
KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)
KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, kvm_cpuid2)
KVM_GET_EMULATED_CPUID = _IOWR(KVMIO, 0x09, kvm_cpuid2)
KVM_GET_MSR_FEATURE_INDEX_LIST = _IOWR(KVMIO, 0x0A, kvm_msr_list)
KVM_GET_SUPPORTED_HV_CPUID = _IOWR(KVMIO, 0xC1, kvm_cpuid2)  # system and vCPU fd

# ---- ioctls for VM fds ---------------------------------------------------------------
KVM_SET_MEMORY_REGION = _IOW(KVMIO, 0x40, kvm_memory_region)  # deprecated
KVM_CREATE_VCPU = _IO(KVMIO, 0x41)  # arg: vCPU id; returns a vCPU fd
KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, kvm_dirty_log)
KVM_SET_NR_MMU_PAGES = _IO(KVMIO, 0x44)
KVM_GET_NR_MMU_PAGES = _IO(KVMIO, 0x45)
KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, kvm_userspace_memory_region)
KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47)
KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, _u64)
KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, kvm_userspace_memory_region2)  # 6.8+
KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60)
KVM_IRQ_LINE = _IOW(KVMIO, 0x61, kvm_irq_level)
KVM_GET_IRQCHIP = _IOWR(KVMIO, 0x62, kvm_irqchip)
KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, kvm_irqchip)  # sic: _IOR in the header
KVM_CREATE_PIT = _IO(KVMIO, 0x64)
KVM_GET_PIT = _IOWR(KVMIO, 0x65, kvm_pit_state)
KVM_SET_PIT = _IOR(KVMIO, 0x66, kvm_pit_state)
KVM_IRQ_LINE_STATUS = _IOWR(KVMIO, 0x67, kvm_irq_level)
KVM_REGISTER_COALESCED_MMIO = _IOW(KVMIO, 0x67, kvm_coalesced_mmio_zone)
KVM_UNREGISTER_COALESCED_MMIO = _IOW(KVMIO, 0x68, kvm_coalesced_mmio_zone)
KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6A, kvm_irq_routing)
KVM_REINJECT_CONTROL = _IO(KVMIO, 0x71)
KVM_IRQFD = _IOW(KVMIO, 0x76, kvm_irqfd)
KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, kvm_pit_config)
KVM_SET_BOOT_CPU_ID = _IO(KVMIO, 0x78)
KVM_IOEVENTFD = _IOW(KVMIO, 0x79, kvm_ioeventfd)
KVM_SET_CLOCK = _IOW(KVMIO, 0x7B, kvm_clock_data)
KVM_GET_CLOCK = _IOR(KVMIO, 0x7C, kvm_clock_data)
KVM_GET_PIT2 = _IOR(KVMIO, 0x9F, kvm_pit_state2)
KVM_SET_PIT2 = _IOW(KVMIO, 0xA0, kvm_pit_state2)
KVM_SET_TSC_KHZ = _IO(KVMIO, 0xA2)  # VM (KVM_CAP_VM_TSC_CONTROL) and vCPU
KVM_GET_TSC_KHZ = _IO(KVMIO, 0xA3)  # VM and vCPU
KVM_SIGNAL_MSI = _IOW(KVMIO, 0xA5, kvm_msi)
KVM_X86_SET_MSR_FILTER = _IOW(KVMIO, 0xC6, kvm_msr_filter)
KVM_RESET_DIRTY_RINGS = _IO(KVMIO, 0xC7)
KVM_CLEAR_DIRTY_LOG = _IOWR(KVMIO, 0xC0, kvm_clear_dirty_log)
KVM_CREATE_DEVICE = _IOWR(KVMIO, 0xE0, kvm_create_device)
KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xE1, kvm_device_attr)  # device, VM, vCPU and sys fds
KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xE2, kvm_device_attr)
KVM_HAS_DEVICE_ATTR = _IOW(KVMIO, 0xE3, kvm_device_attr)

# ---- ioctls for VM and vCPU fds ------------------------------------------------------
KVM_ENABLE_CAP = _IOW(KVMIO, 0xA3, kvm_enable_cap)
KVM_GET_STATS_FD = _IO(KVMIO, 0xCE)

# ---- ioctls for vCPU fds -------------------------------------------------------------
KVM_RUN = _IO(KVMIO, 0x80)
KVM_GET_REGS = _IOR(KVMIO, 0x81, kvm_regs)
KVM_SET_REGS = _IOW(KVMIO, 0x82, kvm_regs)
KVM_GET_SREGS = _IOR(KVMIO, 0x83, kvm_sregs)
KVM_SET_SREGS = _IOW(KVMIO, 0x84, kvm_sregs)
KVM_TRANSLATE = _IOWR(KVMIO, 0x85, kvm_translation)
KVM_INTERRUPT = _IOW(KVMIO, 0x86, kvm_interrupt)
KVM_GET_MSRS = _IOWR(KVMIO, 0x88, kvm_msrs)  # also on the system fd (feature MSRs)
KVM_SET_MSRS = _IOW(KVMIO, 0x89, kvm_msrs)
KVM_SET_CPUID = _IOW(KVMIO, 0x8A, kvm_cpuid)  # legacy
KVM_SET_SIGNAL_MASK = _IOW(KVMIO, 0x8B, kvm_signal_mask)
KVM_GET_FPU = _IOR(KVMIO, 0x8C, kvm_fpu)
KVM_SET_FPU = _IOW(KVMIO, 0x8D, kvm_fpu)
KVM_GET_LAPIC = _IOR(KVMIO, 0x8E, kvm_lapic_state)
KVM_SET_LAPIC = _IOW(KVMIO, 0x8F, kvm_lapic_state)
KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, kvm_cpuid2)
KVM_GET_CPUID2 = _IOWR(KVMIO, 0x91, kvm_cpuid2)
KVM_TPR_ACCESS_REPORTING = _IOWR(KVMIO, 0x92, kvm_tpr_access_ctl)
KVM_SET_VAPIC_ADDR = _IOW(KVMIO, 0x93, kvm_vapic_addr)
KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, kvm_mp_state)
KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, kvm_mp_state)
KVM_NMI = _IO(KVMIO, 0x9A)
KVM_SET_GUEST_DEBUG = _IOW(KVMIO, 0x9B, kvm_guest_debug)
KVM_X86_SETUP_MCE = _IOW(KVMIO, 0x9C, _u64)
KVM_X86_GET_MCE_CAP_SUPPORTED = _IOR(KVMIO, 0x9D, _u64)  # system fd
KVM_X86_SET_MCE = _IOW(KVMIO, 0x9E, kvm_x86_mce)
KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9F, kvm_vcpu_events)
KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xA0, kvm_vcpu_events)
KVM_GET_DEBUGREGS = _IOR(KVMIO, 0xA1, kvm_debugregs)
KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xA2, kvm_debugregs)
KVM_GET_XSAVE = _IOR(KVMIO, 0xA4, kvm_xsave)
KVM_SET_XSAVE = _IOW(KVMIO, 0xA5, kvm_xsave)
KVM_GET_XCRS = _IOR(KVMIO, 0xA6, kvm_xcrs)
KVM_SET_XCRS = _IOW(KVMIO, 0xA7, kvm_xcrs)
KVM_GET_ONE_REG = _IOW(KVMIO, 0xAB, kvm_one_reg)
KVM_SET_ONE_REG = _IOW(KVMIO, 0xAC, kvm_one_reg)
KVM_KVMCLOCK_CTRL = _IO(KVMIO, 0xAD)
KVM_SMI = _IO(KVMIO, 0xB7)
KVM_GET_SREGS2 = _IOR(KVMIO, 0xCC, kvm_sregs2)
KVM_SET_SREGS2 = _IOW(KVMIO, 0xCD, kvm_sregs2)
KVM_GET_XSAVE2 = _IOR(KVMIO, 0xCF, kvm_xsave)

#: request number -> name, for tracing and error messages.
IOCTL_NAMES: dict[int, str] = {
    v: k for k, v in sorted(globals().items())
    if k.startswith("KVM_") and isinstance(v, int) and k != "KVMIO"
}


def ioctl_name(request: int) -> str:
    """The KVM_* name of a request number, or its hex form if unknown."""
    return IOCTL_NAMES.get(request, f"0x{request:08x}")


__all__ = ["KVMIO", "IOCTL_NAMES", "ioctl_name",
           "_IOC", "_IO", "_IOR", "_IOW", "_IOWR", "_IOC_DIR", "_IOC_TYPE", "_IOC_NR", "_IOC_SIZE",
           "_IOC_NONE", "_IOC_READ", "_IOC_WRITE"] + sorted(IOCTL_NAMES.values())
