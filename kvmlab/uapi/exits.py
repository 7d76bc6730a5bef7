"""KVM_EXIT_* and what goes with kvm_run's exit data (include/uapi/linux/kvm.h).

Each family exists twice: module constants with the kernel's names and an IntEnum for
value -> name lookups.

>>> ExitReason(KVM_EXIT_MMIO)
<ExitReason.MMIO: 6>
>>> exit_reason_name(6), exit_reason_name(999)
('KVM_EXIT_MMIO', 'KVM_EXIT_999')
"""
from __future__ import annotations

import enum

# ---- KVM_EXIT_* (kvm_run.exit_reason) -------------------------------------------------


class ExitReason(enum.IntEnum):
    """KVM_EXIT_* (include/uapi/linux/kvm.h): values of kvm_run.exit_reason."""

    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    SET_TPR = 11
    TPR_ACCESS = 12
    S390_SIEIC = 13
    S390_RESET = 14
    DCR = 15  # deprecated
    NMI = 16
    INTERNAL_ERROR = 17
    OSI = 18
    PAPR_HCALL = 19
    S390_UCONTROL = 20
    WATCHDOG = 21
    S390_TSCH = 22
    EPR = 23
    SYSTEM_EVENT = 24
    S390_STSI = 25
    IOAPIC_EOI = 26
    HYPERV = 27
    ARM_NISV = 28
    X86_RDMSR = 29
    X86_WRMSR = 30
    DIRTY_RING_FULL = 31
    AP_RESET_HOLD = 32
    X86_BUS_LOCK = 33
    XEN = 34
    RISCV_SBI = 35
    RISCV_CSR = 36
    NOTIFY = 37
    LOONGARCH_IOCSR = 38  # newer headers
    MEMORY_FAULT = 39  # newer headers
    TDX = 40  # newer headers
    ARM_SEA = 41  # newer headers

    @property
    def kernel_name(self) -> str:
        return "KVM_EXIT_" + self.name


def exit_reason_name(value: int) -> str:
    """``KVM_EXIT_<NAME>`` for an exit_reason value, ``KVM_EXIT_<n>`` if unknown."""
    try:
        return ExitReason(value).kernel_name
    except ValueError:
        return f"KVM_EXIT_{value}"


# the same values as module constants (kept equal to ExitReason by the tests)
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_SET_TPR = 11
KVM_EXIT_TPR_ACCESS = 12
KVM_EXIT_S390_SIEIC = 13
KVM_EXIT_S390_RESET = 14
KVM_EXIT_DCR = 15
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_OSI = 18
KVM_EXIT_PAPR_HCALL = 19
KVM_EXIT_S390_UCONTROL = 20
KVM_EXIT_WATCHDOG = 21
KVM_EXIT_S390_TSCH = 22
KVM_EXIT_EPR = 23
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_S390_STSI = 25
KVM_EXIT_IOAPIC_EOI = 26
KVM_EXIT_HYPERV = 27
KVM_EXIT_ARM_NISV = 28
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30
KVM_EXIT_DIRTY_RING_FULL = 31
KVM_EXIT_AP_RESET_HOLD = 32
KVM_EXIT_X86_BUS_LOCK = 33
KVM_EXIT_XEN = 34
KVM_EXIT_RISCV_SBI = 35
KVM_EXIT_RISCV_CSR = 36
KVM_EXIT_NOTIFY = 37
KVM_EXIT_LOONGARCH_IOCSR = 38
KVM_EXIT_MEMORY_FAULT = 39
KVM_EXIT_TDX = 40
KVM_EXIT_ARM_SEA = 41

# kvm_run.io.direction
KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# kvm_run.flags (x86)
KVM_RUN_X86_SMM = 1 << 0
KVM_RUN_X86_BUS_LOCK = 1 << 1
KVM_RUN_X86_GUEST_MODE = 1 << 2  # newer headers

# kvm_run.internal.suberror (KVM_EXIT_INTERNAL_ERROR)


class InternalError(enum.IntEnum):
    """KVM_INTERNAL_ERROR_* (include/uapi/linux/kvm.h): kvm_run.internal.suberror."""

    EMULATION = 1
    SIMUL_EX = 2
    DELIVERY_EV = 3
    UNEXPECTED_EXIT_REASON = 4


KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1 << 0

# kvm_run.system_event.type (KVM_EXIT_SYSTEM_EVENT)


class SystemEvent(enum.IntEnum):
    """KVM_SYSTEM_EVENT_* (include/uapi/linux/kvm.h): kvm_run.system_event.type."""

    SHUTDOWN = 1
    RESET = 2
    CRASH = 3
    WAKEUP = 4
    SUSPEND = 5
    SEV_TERM = 6
    TDX_FATAL = 7  # newer headers


# the same values as module constants (kept equal to SystemEvent by the tests)
KVM_SYSTEM_EVENT_SHUTDOWN = 1
KVM_SYSTEM_EVENT_RESET = 2
KVM_SYSTEM_EVENT_CRASH = 3
KVM_SYSTEM_EVENT_WAKEUP = 4
KVM_SYSTEM_EVENT_SUSPEND = 5
KVM_SYSTEM_EVENT_SEV_TERM = 6
KVM_SYSTEM_EVENT_TDX_FATAL = 7

# kvm_run.msr.reason (KVM_EXIT_X86_RDMSR/WRMSR) and KVM_CAP_X86_USER_SPACE_MSR args
KVM_MSR_EXIT_REASON_INVAL = 1 << 0
KVM_MSR_EXIT_REASON_UNKNOWN = 1 << 1
KVM_MSR_EXIT_REASON_FILTER = 1 << 2
KVM_MSR_FILTER_READ = 1 << 0
KVM_MSR_FILTER_WRITE = 1 << 1
KVM_MSR_FILTER_DEFAULT_ALLOW = 0 << 0
KVM_MSR_FILTER_DEFAULT_DENY = 1 << 0

# kvm_run.notify.flags, kvm_run.hyperv.type, kvm_run.xen.type, hypercall.flags
KVM_NOTIFY_CONTEXT_INVALID = 1 << 0
KVM_EXIT_HYPERV_SYNIC = 1
KVM_EXIT_HYPERV_HCALL = 2
KVM_EXIT_HYPERV_SYNDBG = 3
KVM_EXIT_XEN_HCALL = 1
KVM_EXIT_HYPERCALL_LONG_MODE = 1 << 0  # newer headers (hypercall.flags)

# kvm_run.memory_fault.flags (newer headers)
KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3


__all__ = sorted(n for n in globals() if n.isupper()) + [
    "ExitReason", "InternalError", "SystemEvent", "exit_reason_name"]
