"""struct kvm_run (include/uapi/linux/kvm.h): page 0 of the vCPU mmap, 2352 bytes on x86.

The 256-byte exit union is an anonymous member, so its members read like C:

>>> run = kvm_run(); run.io.port = 0x3F8
>>> ctypes.sizeof(run), kvm_run.io.offset, run.io.port == 0x3F8, offsetof(kvm_run, "s.regs.sregs")
(2352, 32, True, 448)
"""
from __future__ import annotations

import ctypes
from ctypes import c_char, c_uint8, c_uint16, c_uint32, c_uint64

from .structs import (
    SYNC_REGS_SIZE_BYTES,
    _Struct,
    _Union,
    kvm_debug_exit_arch,
    kvm_sync_regs,
    offsetof,  # noqa: F401  (used by the doctest)
)


class kvm_run_hw(_Struct):
    """kvm_run.hw (KVM_EXIT_UNKNOWN)."""

    _fields_ = [("hardware_exit_reason", c_uint64)]


class kvm_run_fail_entry(_Struct):
    """kvm_run.fail_entry (KVM_EXIT_FAIL_ENTRY)."""

    _fields_ = [("hardware_entry_failure_reason", c_uint64), ("cpu", c_uint32)]


class kvm_run_ex(_Struct):
    """kvm_run.ex (KVM_EXIT_EXCEPTION)."""

    _fields_ = [("exception", c_uint32), ("error_code", c_uint32)]


class kvm_run_io(_Struct):
    """kvm_run.io (KVM_EXIT_IO): data is at ``data_offset`` from the start of kvm_run."""

    _fields_ = [("direction", c_uint8), ("size", c_uint8), ("port", c_uint16),
                ("count", c_uint32), ("data_offset", c_uint64)]


class kvm_run_debug(_Struct):
    """kvm_run.debug (KVM_EXIT_DEBUG)."""

    _fields_ = [("arch", kvm_debug_exit_arch)]


class kvm_run_mmio(_Struct):
    """kvm_run.mmio (KVM_EXIT_MMIO)."""

    _fields_ = [("phys_addr", c_uint64), ("data", c_uint8 * 8), ("len", c_uint32),
                ("is_write", c_uint8)]


class kvm_run_hypercall_u(_Union):
    _fields_ = [("longmode", c_uint32), ("flags", c_uint64)]


class kvm_run_hypercall(_Struct):
    """kvm_run.hypercall (KVM_EXIT_HYPERCALL).

    Newer headers overlay ``longmode`` (u32, 6.1) with ``flags`` (u64, bit 0 = long mode).
    """

    _anonymous_ = ("_u",)
    _fields_ = [("nr", c_uint64), ("args", c_uint64 * 6), ("ret", c_uint64),
                ("_u", kvm_run_hypercall_u)]


class kvm_run_tpr_access(_Struct):
    """kvm_run.tpr_access (KVM_EXIT_TPR_ACCESS)."""

    _fields_ = [("rip", c_uint64), ("is_write", c_uint32), ("pad", c_uint32)]


class kvm_run_internal(_Struct):
    """kvm_run.internal (KVM_EXIT_INTERNAL_ERROR)."""

    _fields_ = [("suberror", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16)]


class kvm_run_emulation_failure(_Struct):
    """kvm_run.emulation_failure (KVM_EXIT_INTERNAL_ERROR, suberror KVM_INTERNAL_ERROR_EMULATION).

    C nests ``insn_size``/``insn_bytes`` in an unnamed union+struct; same offsets here.
    """

    _fields_ = [("suberror", c_uint32), ("ndata", c_uint32), ("flags", c_uint64),
                ("insn_size", c_uint8), ("insn_bytes", c_uint8 * 15)]


class kvm_run_system_event_u(_Union):
    _fields_ = [("flags", c_uint64), ("data", c_uint64 * 16)]


class kvm_run_system_event(_Struct):
    """kvm_run.system_event (KVM_EXIT_SYSTEM_EVENT)."""

    _anonymous_ = ("_u",)
    _fields_ = [("type", c_uint32), ("ndata", c_uint32), ("_u", kvm_run_system_event_u)]


class kvm_run_eoi(_Struct):
    """kvm_run.eoi (KVM_EXIT_IOAPIC_EOI)."""

    _fields_ = [("vector", c_uint8)]


class kvm_hyperv_exit_synic(_Struct):
    _fields_ = [("msr", c_uint32), ("pad2", c_uint32), ("control", c_uint64),
                ("evt_page", c_uint64), ("msg_page", c_uint64)]


class kvm_hyperv_exit_hcall(_Struct):
    _fields_ = [("input", c_uint64), ("result", c_uint64), ("params", c_uint64 * 2)]


class kvm_hyperv_exit_syndbg(_Struct):
    _fields_ = [("msr", c_uint32), ("pad2", c_uint32), ("control", c_uint64),
                ("status", c_uint64), ("send_page", c_uint64), ("recv_page", c_uint64),
                ("pending_page", c_uint64)]


class kvm_hyperv_exit_u(_Union):
    _fields_ = [("synic", kvm_hyperv_exit_synic), ("hcall", kvm_hyperv_exit_hcall),
                ("syndbg", kvm_hyperv_exit_syndbg)]


class kvm_hyperv_exit(_Struct):
    """struct kvm_hyperv_exit (include/uapi/linux/kvm.h): kvm_run.hyperv (KVM_EXIT_HYPERV)."""

    _fields_ = [("type", c_uint32), ("pad1", c_uint32), ("u", kvm_hyperv_exit_u)]


class kvm_xen_exit_hcall(_Struct):
    _fields_ = [("longmode", c_uint32), ("cpl", c_uint32), ("input", c_uint64),
                ("result", c_uint64), ("params", c_uint64 * 6)]


class kvm_xen_exit_u(_Union):
    _fields_ = [("hcall", kvm_xen_exit_hcall)]


class kvm_xen_exit(_Struct):
    """struct kvm_xen_exit (include/uapi/linux/kvm.h): kvm_run.xen (KVM_EXIT_XEN)."""

    _fields_ = [("type", c_uint32), ("u", kvm_xen_exit_u)]


class kvm_run_msr(_Struct):
    """kvm_run.msr (KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR)."""

    _fields_ = [("error", c_uint8), ("pad", c_uint8 * 7), ("reason", c_uint32),
                ("index", c_uint32), ("data", c_uint64)]


class kvm_run_notify(_Struct):
    """kvm_run.notify (KVM_EXIT_NOTIFY)."""

    _fields_ = [("flags", c_uint32)]


class kvm_run_memory_fault(_Struct):
    """kvm_run.memory_fault (KVM_EXIT_MEMORY_FAULT, headers 6.8+)."""

    _fields_ = [("flags", c_uint64), ("gpa", c_uint64), ("size", c_uint64)]


class kvm_run_exit(_Union):
    """The 256-byte exit-data union of struct kvm_run (anonymous in C)."""

    _fields_ = [
        ("hw", kvm_run_hw),
        ("fail_entry", kvm_run_fail_entry),
        ("ex", kvm_run_ex),
        ("io", kvm_run_io),
        ("debug", kvm_run_debug),
        ("mmio", kvm_run_mmio),
        ("hypercall", kvm_run_hypercall),
        ("tpr_access", kvm_run_tpr_access),
        ("internal", kvm_run_internal),
        ("emulation_failure", kvm_run_emulation_failure),
        ("system_event", kvm_run_system_event),
        ("eoi", kvm_run_eoi),
        ("hyperv", kvm_hyperv_exit),
        ("msr", kvm_run_msr),
        ("xen", kvm_xen_exit),
        ("notify", kvm_run_notify),
        ("memory_fault", kvm_run_memory_fault),
        ("padding", c_char * 256),
    ]


class kvm_run_s(_Union):
    """kvm_run.s: the sync-regs union (``regs`` or 2048 bytes of ``padding``)."""

    _fields_ = [("regs", kvm_sync_regs), ("padding", c_char * SYNC_REGS_SIZE_BYTES)]


class kvm_run(_Struct):
    """struct kvm_run (include/uapi/linux/kvm.h): page 0 of the vCPU mmap, 2352 bytes on x86.

    Map it over the mmap with ``kvm_run.from_buffer(mm)``.
    """

    _anonymous_ = ("_exit",)
    _fields_ = [
        ("request_interrupt_window", c_uint8),
        ("immediate_exit", c_uint8),
        ("padding1", c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", c_uint8),
        ("if_flag", c_uint8),
        ("flags", c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("_exit", kvm_run_exit),
        ("kvm_valid_regs", c_uint64),
        ("kvm_dirty_regs", c_uint64),
        ("s", kvm_run_s),
    ]


__all__ = sorted(n for n in dir() if n.startswith("kvm_") and isinstance(globals()[n], type)
                 and globals()[n].__module__ == __name__)
