"""The structs of <linux/kvm.h> and <asm/kvm.h> (x86-64) as ctypes structures.

Class and field names are the kernel's (``struct kvm_regs`` -> :class:`kvm_regs`); the
byte layout is the kernel's (natural alignment, as gcc lays it out on x86-64).  Unnamed C
unions/structs are ctypes ``_anonymous_`` members, so ``run.io.port`` or
``zone.pio`` read like C.  Flexible array members (``entries[]``) are zero-length ctypes
arrays; :func:`kvm_msrs_with` and friends build a structure with room for *n* entries.

struct kvm_run and the members of its exit union are in :mod:`.run`.

>>> ctypes.sizeof(kvm_sregs), offsetof(kvm_sregs, "idt.limit")
(312, 216)
>>> msrs = kvm_msrs_with(2); msrs.nmsrs, len(msrs.entries), ctypes.sizeof(msrs)
(2, 2, 40)
"""
from __future__ import annotations

import ctypes
import functools
from ctypes import (
    Structure,
    Union,
    c_char,
    c_int16,
    c_int32,
    c_int64,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)

__all__ = [  # filled at the bottom with every kvm_* name defined here
    "offsetof",
    "kvm_msrs_with",
    "kvm_msr_list_with",
    "kvm_cpuid2_with",
    "kvm_irq_routing_with",
    "kvm_coalesced_mmio_ring_with",
    "kvm_signal_mask_with",
    "KVM_NR_INTERRUPTS",
    "KVM_APIC_REG_SIZE",
    "KVM_IOAPIC_NUM_PINS",
    "KVM_MAX_XCRS",
    "SYNC_REGS_SIZE_BYTES",
]

KVM_NR_INTERRUPTS = 256  # asm/kvm.h: architectural interrupt line count
KVM_APIC_REG_SIZE = 0x400
KVM_IOAPIC_NUM_PINS = 24
KVM_MAX_XCRS = 16
SYNC_REGS_SIZE_BYTES = 2048


class _Repr:
    """Mixin: ``kvm_foo(a=1, b=2)`` reprs listing the named (non-padding) fields."""

    def __repr__(self) -> str:
        parts = []
        for name, *_ in self._fields_:
            if name in getattr(self, "_anonymous_", ()) or name.startswith("pad") or name == "reserved":
                continue
            value = getattr(self, name)
            if isinstance(value, ctypes.Array):
                value = list(value) if len(value) <= 8 else f"[{len(value)} items]"
            elif isinstance(value, int):
                value = hex(value) if value > 9 else value
            parts.append(f"{name}={value}")
        return f"{type(self).__name__}({', '.join(str(p) for p in parts)})"


class _Struct(_Repr, Structure):
    pass


class _Union(_Repr, Union):
    pass


# --------------------------------------------------------------------------------------
# Registers (asm/kvm.h)


class kvm_regs(_Struct):
    """struct kvm_regs (arch/x86/include/uapi/asm/kvm.h): KVM_GET_REGS / KVM_SET_REGS."""

    _fields_ = [(n, c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class kvm_segment(_Struct):
    """struct kvm_segment (arch/x86/include/uapi/asm/kvm.h): one segment register."""

    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    ]


class kvm_dtable(_Struct):
    """struct kvm_dtable (arch/x86/include/uapi/asm/kvm.h): GDTR / IDTR."""

    _fields_ = [("base", c_uint64), ("limit", c_uint16), ("padding", c_uint16 * 3)]


_SEGMENTS = [(n, kvm_segment) for n in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")]
_CONTROL = [(n, c_uint64) for n in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")]


class kvm_sregs(_Struct):
    """struct kvm_sregs (arch/x86/include/uapi/asm/kvm.h): KVM_GET_SREGS / KVM_SET_SREGS."""

    _fields_ = _SEGMENTS + [("gdt", kvm_dtable), ("idt", kvm_dtable)] + _CONTROL + [
        ("interrupt_bitmap", c_uint64 * ((KVM_NR_INTERRUPTS + 63) // 64)),
    ]


class kvm_sregs2(_Struct):
    """struct kvm_sregs2 (arch/x86/include/uapi/asm/kvm.h): KVM_GET_SREGS2 / KVM_SET_SREGS2."""

    _fields_ = _SEGMENTS + [("gdt", kvm_dtable), ("idt", kvm_dtable)] + _CONTROL + [
        ("flags", c_uint64),
        ("pdptrs", c_uint64 * 4),
    ]


class kvm_fpu(_Struct):
    """struct kvm_fpu (arch/x86/include/uapi/asm/kvm.h): KVM_GET_FPU / KVM_SET_FPU."""

    _fields_ = [
        ("fpr", (c_uint8 * 16) * 8),
        ("fcw", c_uint16),
        ("fsw", c_uint16),
        ("ftwx", c_uint8),
        ("pad1", c_uint8),
        ("last_opcode", c_uint16),
        ("last_ip", c_uint64),
        ("last_dp", c_uint64),
        ("xmm", (c_uint8 * 16) * 16),
        ("mxcsr", c_uint32),
        ("pad2", c_uint32),
    ]


class kvm_msr_entry(_Struct):
    """struct kvm_msr_entry (arch/x86/include/uapi/asm/kvm.h)."""

    _fields_ = [("index", c_uint32), ("reserved", c_uint32), ("data", c_uint64)]


class kvm_msrs(_Struct):
    """struct kvm_msrs (arch/x86/include/uapi/asm/kvm.h): header of KVM_GET/SET_MSRS.

    ``entries`` is the flexible array (length 0 here); use :func:`kvm_msrs_with`.
    """

    _fields_ = [("nmsrs", c_uint32), ("pad", c_uint32), ("entries", kvm_msr_entry * 0)]


class kvm_msr_list(_Struct):
    """struct kvm_msr_list (arch/x86/include/uapi/asm/kvm.h): KVM_GET_MSR_INDEX_LIST header.

    ``indices`` is the flexible array; use :func:`kvm_msr_list_with`.
    """

    _fields_ = [("nmsrs", c_uint32), ("indices", c_uint32 * 0)]


class kvm_cpuid_entry(_Struct):
    """struct kvm_cpuid_entry (arch/x86/include/uapi/asm/kvm.h): legacy KVM_SET_CPUID entry."""

    _fields_ = [(n, c_uint32) for n in ("function", "eax", "ebx", "ecx", "edx", "padding")]


class kvm_cpuid(_Struct):
    """struct kvm_cpuid (arch/x86/include/uapi/asm/kvm.h): legacy KVM_SET_CPUID header."""

    _fields_ = [("nent", c_uint32), ("padding", c_uint32), ("entries", kvm_cpuid_entry * 0)]


class kvm_cpuid_entry2(_Struct):
    """struct kvm_cpuid_entry2 (arch/x86/include/uapi/asm/kvm.h): one CPUID leaf/subleaf."""

    _fields_ = [(n, c_uint32) for n in ("function", "index", "flags", "eax", "ebx", "ecx", "edx")] + [
        ("padding", c_uint32 * 3)]


class kvm_cpuid2(_Struct):
    """struct kvm_cpuid2 (arch/x86/include/uapi/asm/kvm.h): header of KVM_SET/GET_CPUID2.

    ``entries`` is the flexible array; use :func:`kvm_cpuid2_with`.
    """

    _fields_ = [("nent", c_uint32), ("padding", c_uint32), ("entries", kvm_cpuid_entry2 * 0)]


class kvm_lapic_state(_Struct):
    """struct kvm_lapic_state (arch/x86/include/uapi/asm/kvm.h): the raw 1 KiB APIC page.

    The kernel declares ``char regs[1024]``; bytes here (``c_uint8``) so indexing gives ints.
    """

    _fields_ = [("regs", c_uint8 * KVM_APIC_REG_SIZE)]


class kvm_debugregs(_Struct):
    """struct kvm_debugregs (arch/x86/include/uapi/asm/kvm.h): KVM_GET/SET_DEBUGREGS."""

    _fields_ = [
        ("db", c_uint64 * 4),
        ("dr6", c_uint64),
        ("dr7", c_uint64),
        ("flags", c_uint64),
        ("reserved", c_uint64 * 9),
    ]


class kvm_xsave(_Struct):
    """struct kvm_xsave (arch/x86/include/uapi/asm/kvm.h): KVM_GET/SET_XSAVE (4096 bytes)."""

    _fields_ = [("region", c_uint32 * 1024), ("extra", c_uint32 * 0)]


class kvm_xcr(_Struct):
    """struct kvm_xcr (arch/x86/include/uapi/asm/kvm.h)."""

    _fields_ = [("xcr", c_uint32), ("reserved", c_uint32), ("value", c_uint64)]


class kvm_xcrs(_Struct):
    """struct kvm_xcrs (arch/x86/include/uapi/asm/kvm.h): KVM_GET/SET_XCRS."""

    _fields_ = [
        ("nr_xcrs", c_uint32),
        ("flags", c_uint32),
        ("xcrs", kvm_xcr * KVM_MAX_XCRS),
        ("padding", c_uint64 * 16),
    ]


# --------------------------------------------------------------------------------------
# vCPU events, sync regs (asm/kvm.h)


class kvm_vcpu_events_exception(_Struct):
    """kvm_vcpu_events.exception (unnamed struct in asm/kvm.h)."""

    _fields_ = [("injected", c_uint8), ("nr", c_uint8), ("has_error_code", c_uint8),
                ("pending", c_uint8), ("error_code", c_uint32)]


class kvm_vcpu_events_interrupt(_Struct):
    """kvm_vcpu_events.interrupt (unnamed struct in asm/kvm.h)."""

    _fields_ = [("injected", c_uint8), ("nr", c_uint8), ("soft", c_uint8), ("shadow", c_uint8)]


class kvm_vcpu_events_nmi(_Struct):
    """kvm_vcpu_events.nmi (unnamed struct in asm/kvm.h)."""

    _fields_ = [("injected", c_uint8), ("pending", c_uint8), ("masked", c_uint8), ("pad", c_uint8)]


class kvm_vcpu_events_smi(_Struct):
    """kvm_vcpu_events.smi (unnamed struct in asm/kvm.h)."""

    _fields_ = [("smm", c_uint8), ("pending", c_uint8), ("smm_inside_nmi", c_uint8),
                ("latched_init", c_uint8)]


class kvm_vcpu_events_triple_fault(_Struct):
    """kvm_vcpu_events.triple_fault (unnamed struct in asm/kvm.h)."""

    _fields_ = [("pending", c_uint8)]


class kvm_vcpu_events(_Struct):
    """struct kvm_vcpu_events (arch/x86/include/uapi/asm/kvm.h): KVM_GET/SET_VCPU_EVENTS."""

    _fields_ = [
        ("exception", kvm_vcpu_events_exception),
        ("interrupt", kvm_vcpu_events_interrupt),
        ("nmi", kvm_vcpu_events_nmi),
        ("sipi_vector", c_uint32),
        ("flags", c_uint32),
        ("smi", kvm_vcpu_events_smi),
        ("triple_fault", kvm_vcpu_events_triple_fault),
        ("reserved", c_uint8 * 26),
        ("exception_has_payload", c_uint8),
        ("exception_payload", c_uint64),
    ]


class kvm_sync_regs(_Struct):
    """struct kvm_sync_regs (arch/x86/include/uapi/asm/kvm.h): kvm_run.s.regs."""

    _fields_ = [("regs", kvm_regs), ("sregs", kvm_sregs), ("events", kvm_vcpu_events)]


# --------------------------------------------------------------------------------------
# Guest debug (asm/kvm.h + linux/kvm.h)


class kvm_debug_exit_arch(_Struct):
    """struct kvm_debug_exit_arch (arch/x86/include/uapi/asm/kvm.h): kvm_run.debug.arch."""

    _fields_ = [("exception", c_uint32), ("pad", c_uint32), ("pc", c_uint64),
                ("dr6", c_uint64), ("dr7", c_uint64)]


class kvm_guest_debug_arch(_Struct):
    """struct kvm_guest_debug_arch (arch/x86/include/uapi/asm/kvm.h): DR0..DR7 values."""

    _fields_ = [("debugreg", c_uint64 * 8)]


class kvm_guest_debug(_Struct):
    """struct kvm_guest_debug (include/uapi/linux/kvm.h): KVM_SET_GUEST_DEBUG."""

    _fields_ = [("control", c_uint32), ("pad", c_uint32), ("arch", kvm_guest_debug_arch)]


# --------------------------------------------------------------------------------------
# In-kernel irqchip, PIT (asm/kvm.h + linux/kvm.h)


class kvm_pic_state(_Struct):
    """struct kvm_pic_state (arch/x86/include/uapi/asm/kvm.h): one 8259 PIC."""

    _fields_ = [(n, c_uint8) for n in (
        "last_irr", "irr", "imr", "isr", "priority_add", "irq_base", "read_reg_select", "poll",
        "special_mask", "init_state", "auto_eoi", "rotate_on_auto_eoi",
        "special_fully_nested_mode", "init4", "elcr", "elcr_mask")]


class kvm_ioapic_redirtbl_fields(_Struct):
    """kvm_ioapic_state.redirtbl[i].fields (unnamed struct in asm/kvm.h), with bitfields."""

    _fields_ = [
        ("vector", c_uint8),
        ("delivery_mode", c_uint8, 3),
        ("dest_mode", c_uint8, 1),
        ("delivery_status", c_uint8, 1),
        ("polarity", c_uint8, 1),
        ("remote_irr", c_uint8, 1),
        ("trig_mode", c_uint8, 1),
        ("mask", c_uint8, 1),
        ("reserve", c_uint8, 7),
        ("reserved", c_uint8 * 4),
        ("dest_id", c_uint8),
    ]


class kvm_ioapic_redirtbl(_Union):
    """kvm_ioapic_state.redirtbl[i] (unnamed union in asm/kvm.h): ``bits`` or ``fields``."""

    _fields_ = [("bits", c_uint64), ("fields", kvm_ioapic_redirtbl_fields)]


class kvm_ioapic_state(_Struct):
    """struct kvm_ioapic_state (arch/x86/include/uapi/asm/kvm.h)."""

    _fields_ = [
        ("base_address", c_uint64),
        ("ioregsel", c_uint32),
        ("id", c_uint32),
        ("irr", c_uint32),
        ("pad", c_uint32),
        ("redirtbl", kvm_ioapic_redirtbl * KVM_IOAPIC_NUM_PINS),
    ]


class kvm_irqchip_chip(_Union):
    """kvm_irqchip.chip (unnamed union in linux/kvm.h): ``dummy``, ``pic`` or ``ioapic``."""

    _fields_ = [("dummy", c_char * 512), ("pic", kvm_pic_state), ("ioapic", kvm_ioapic_state)]


class kvm_irqchip(_Struct):
    """struct kvm_irqchip (include/uapi/linux/kvm.h): KVM_GET/SET_IRQCHIP (chip_id 0/1/2)."""

    _fields_ = [("chip_id", c_uint32), ("pad", c_uint32), ("chip", kvm_irqchip_chip)]


class kvm_irq_level_u(_Union):
    _fields_ = [("irq", c_uint32), ("status", c_int32)]


class kvm_irq_level(_Struct):
    """struct kvm_irq_level (include/uapi/linux/kvm.h): KVM_IRQ_LINE(_STATUS)."""

    _anonymous_ = ("_u",)
    _fields_ = [("_u", kvm_irq_level_u), ("level", c_uint32)]


class kvm_interrupt(_Struct):
    """struct kvm_interrupt (include/uapi/linux/kvm.h): KVM_INTERRUPT."""

    _fields_ = [("irq", c_uint32)]


class kvm_pit_config(_Struct):
    """struct kvm_pit_config (include/uapi/linux/kvm.h): KVM_CREATE_PIT2."""

    _fields_ = [("flags", c_uint32), ("pad", c_uint32 * 15)]


class kvm_pit_channel_state(_Struct):
    """struct kvm_pit_channel_state (arch/x86/include/uapi/asm/kvm.h): one 8254 channel."""

    _fields_ = [("count", c_uint32), ("latched_count", c_uint16)] + [(n, c_uint8) for n in (
        "count_latched", "status_latched", "status", "read_state", "write_state",
        "write_latch", "rw_mode", "mode", "bcd", "gate")] + [("count_load_time", c_int64)]


class kvm_pit_state(_Struct):
    """struct kvm_pit_state (arch/x86/include/uapi/asm/kvm.h): KVM_GET/SET_PIT."""

    _fields_ = [("channels", kvm_pit_channel_state * 3)]


class kvm_pit_state2(_Struct):
    """struct kvm_pit_state2 (arch/x86/include/uapi/asm/kvm.h): KVM_GET/SET_PIT2."""

    _fields_ = [("channels", kvm_pit_channel_state * 3), ("flags", c_uint32),
                ("reserved", c_uint32 * 9)]


class kvm_reinject_control(_Struct):
    """struct kvm_reinject_control (arch/x86/include/uapi/asm/kvm.h)."""

    _fields_ = [("pit_reinject", c_uint8), ("reserved", c_uint8 * 31)]


class kvm_msi(_Struct):
    """struct kvm_msi (include/uapi/linux/kvm.h): KVM_SIGNAL_MSI."""

    _fields_ = [("address_lo", c_uint32), ("address_hi", c_uint32), ("data", c_uint32),
                ("flags", c_uint32), ("devid", c_uint32), ("pad", c_uint8 * 12)]


class kvm_irq_routing_irqchip(_Struct):
    """struct kvm_irq_routing_irqchip (include/uapi/linux/kvm.h)."""

    _fields_ = [("irqchip", c_uint32), ("pin", c_uint32)]


class kvm_irq_routing_msi_u(_Union):
    _fields_ = [("pad", c_uint32), ("devid", c_uint32)]


class kvm_irq_routing_msi(_Struct):
    """struct kvm_irq_routing_msi (include/uapi/linux/kvm.h)."""

    _anonymous_ = ("_u",)
    _fields_ = [("address_lo", c_uint32), ("address_hi", c_uint32), ("data", c_uint32),
                ("_u", kvm_irq_routing_msi_u)]


class kvm_irq_routing_hv_sint(_Struct):
    """struct kvm_irq_routing_hv_sint (include/uapi/linux/kvm.h)."""

    _fields_ = [("vcpu", c_uint32), ("sint", c_uint32)]


class kvm_irq_routing_xen_evtchn(_Struct):
    """struct kvm_irq_routing_xen_evtchn (include/uapi/linux/kvm.h)."""

    _fields_ = [("port", c_uint32), ("vcpu", c_uint32), ("priority", c_uint32)]


class kvm_irq_routing_entry_u(_Union):
    """kvm_irq_routing_entry.u (unnamed union in linux/kvm.h)."""

    _fields_ = [("irqchip", kvm_irq_routing_irqchip), ("msi", kvm_irq_routing_msi),
                ("hv_sint", kvm_irq_routing_hv_sint), ("xen_evtchn", kvm_irq_routing_xen_evtchn),
                ("pad", c_uint32 * 8)]


class kvm_irq_routing_entry(_Struct):
    """struct kvm_irq_routing_entry (include/uapi/linux/kvm.h): one GSI route."""

    _fields_ = [("gsi", c_uint32), ("type", c_uint32), ("flags", c_uint32), ("pad", c_uint32),
                ("u", kvm_irq_routing_entry_u)]


class kvm_irq_routing(_Struct):
    """struct kvm_irq_routing (include/uapi/linux/kvm.h): KVM_SET_GSI_ROUTING header.

    ``entries`` is the flexible array; use :func:`kvm_irq_routing_with`.
    """

    _fields_ = [("nr", c_uint32), ("flags", c_uint32), ("entries", kvm_irq_routing_entry * 0)]


class kvm_irqfd(_Struct):
    """struct kvm_irqfd (include/uapi/linux/kvm.h): KVM_IRQFD."""

    _fields_ = [("fd", c_uint32), ("gsi", c_uint32), ("flags", c_uint32),
                ("resamplefd", c_uint32), ("pad", c_uint8 * 16)]


class kvm_ioeventfd(_Struct):
    """struct kvm_ioeventfd (include/uapi/linux/kvm.h): KVM_IOEVENTFD."""

    _fields_ = [("datamatch", c_uint64), ("addr", c_uint64), ("len", c_uint32),
                ("fd", c_int32), ("flags", c_uint32), ("pad", c_uint8 * 36)]


# --------------------------------------------------------------------------------------
# Memory (linux/kvm.h)


class kvm_memory_region(_Struct):
    """struct kvm_memory_region (include/uapi/linux/kvm.h): deprecated KVM_SET_MEMORY_REGION."""

    _fields_ = [("slot", c_uint32), ("flags", c_uint32), ("guest_phys_addr", c_uint64),
                ("memory_size", c_uint64)]


class kvm_userspace_memory_region(_Struct):
    """struct kvm_userspace_memory_region (include/uapi/linux/kvm.h): KVM_SET_USER_MEMORY_REGION."""

    _fields_ = [("slot", c_uint32), ("flags", c_uint32), ("guest_phys_addr", c_uint64),
                ("memory_size", c_uint64), ("userspace_addr", c_uint64)]


class kvm_userspace_memory_region2(_Struct):
    """struct kvm_userspace_memory_region2 (include/uapi/linux/kvm.h, 6.8+): ..._REGION2."""

    _fields_ = kvm_userspace_memory_region._fields_ + [
        ("guest_memfd_offset", c_uint64), ("guest_memfd", c_uint32), ("pad1", c_uint32),
        ("pad2", c_uint64 * 14)]


class _dirty_bitmap_u(_Union):
    _fields_ = [("dirty_bitmap", c_void_p), ("padding2", c_uint64)]


class kvm_dirty_log(_Struct):
    """struct kvm_dirty_log (include/uapi/linux/kvm.h): KVM_GET_DIRTY_LOG."""

    _anonymous_ = ("_u",)
    _fields_ = [("slot", c_uint32), ("padding1", c_uint32), ("_u", _dirty_bitmap_u)]


class kvm_clear_dirty_log(_Struct):
    """struct kvm_clear_dirty_log (include/uapi/linux/kvm.h): KVM_CLEAR_DIRTY_LOG."""

    _anonymous_ = ("_u",)
    _fields_ = [("slot", c_uint32), ("num_pages", c_uint32), ("first_page", c_uint64),
                ("_u", _dirty_bitmap_u)]


class kvm_dirty_gfn(_Struct):
    """struct kvm_dirty_gfn (include/uapi/linux/kvm.h): one dirty-ring entry."""

    _fields_ = [("flags", c_uint32), ("slot", c_uint32), ("offset", c_uint64)]


class kvm_translation(_Struct):
    """struct kvm_translation (include/uapi/linux/kvm.h): KVM_TRANSLATE."""

    _fields_ = [("linear_address", c_uint64), ("physical_address", c_uint64),
                ("valid", c_uint8), ("writeable", c_uint8), ("usermode", c_uint8),
                ("pad", c_uint8 * 5)]


class _pad_pio_u(_Union):
    _fields_ = [("pad", c_uint32), ("pio", c_uint32)]


class kvm_coalesced_mmio_zone(_Struct):
    """struct kvm_coalesced_mmio_zone (include/uapi/linux/kvm.h): KVM_(UN)REGISTER_COALESCED_MMIO."""

    _anonymous_ = ("_u",)
    _fields_ = [("addr", c_uint64), ("size", c_uint32), ("_u", _pad_pio_u)]


class kvm_coalesced_mmio(_Struct):
    """struct kvm_coalesced_mmio (include/uapi/linux/kvm.h): one coalesced ring entry."""

    _anonymous_ = ("_u",)
    _fields_ = [("phys_addr", c_uint64), ("len", c_uint32), ("_u", _pad_pio_u),
                ("data", c_uint8 * 8)]


class kvm_coalesced_mmio_ring(_Struct):
    """struct kvm_coalesced_mmio_ring (include/uapi/linux/kvm.h): header of mmap page 2.

    ``coalesced_mmio`` is the flexible array; use :func:`kvm_coalesced_mmio_ring_with`.
    """

    _fields_ = [("first", c_uint32), ("last", c_uint32), ("coalesced_mmio", kvm_coalesced_mmio * 0)]


# --------------------------------------------------------------------------------------
# Misc ioctl arguments (linux/kvm.h)


class kvm_mp_state(_Struct):
    """struct kvm_mp_state (include/uapi/linux/kvm.h): KVM_GET/SET_MP_STATE."""

    _fields_ = [("mp_state", c_uint32)]


class kvm_enable_cap(_Struct):
    """struct kvm_enable_cap (include/uapi/linux/kvm.h): KVM_ENABLE_CAP."""

    _fields_ = [("cap", c_uint32), ("flags", c_uint32), ("args", c_uint64 * 4), ("pad", c_uint8 * 64)]


class kvm_clock_data(_Struct):
    """struct kvm_clock_data (include/uapi/linux/kvm.h): KVM_GET/SET_CLOCK."""

    _fields_ = [("clock", c_uint64), ("flags", c_uint32), ("pad0", c_uint32),
                ("realtime", c_uint64), ("host_tsc", c_uint64), ("pad", c_uint32 * 4)]


class kvm_signal_mask(_Struct):
    """struct kvm_signal_mask (include/uapi/linux/kvm.h): KVM_SET_SIGNAL_MASK header."""

    _fields_ = [("len", c_uint32), ("sigset", c_uint8 * 0)]


class kvm_tpr_access_ctl(_Struct):
    """struct kvm_tpr_access_ctl (include/uapi/linux/kvm.h): KVM_TPR_ACCESS_REPORTING."""

    _fields_ = [("enabled", c_uint32), ("flags", c_uint32), ("reserved", c_uint32 * 8)]


class kvm_vapic_addr(_Struct):
    """struct kvm_vapic_addr (include/uapi/linux/kvm.h): KVM_SET_VAPIC_ADDR."""

    _fields_ = [("vapic_addr", c_uint64)]


class kvm_one_reg(_Struct):
    """struct kvm_one_reg (include/uapi/linux/kvm.h): KVM_GET/SET_ONE_REG."""

    _fields_ = [("id", c_uint64), ("addr", c_uint64)]


class kvm_create_device(_Struct):
    """struct kvm_create_device (include/uapi/linux/kvm.h): KVM_CREATE_DEVICE."""

    _fields_ = [("type", c_uint32), ("fd", c_uint32), ("flags", c_uint32)]


class kvm_device_attr(_Struct):
    """struct kvm_device_attr (include/uapi/linux/kvm.h): KVM_{GET,SET,HAS}_DEVICE_ATTR."""

    _fields_ = [("flags", c_uint32), ("group", c_uint32), ("attr", c_uint64), ("addr", c_uint64)]


class kvm_x86_mce(_Struct):
    """struct kvm_x86_mce (include/uapi/linux/kvm.h): KVM_X86_SET_MCE."""

    _fields_ = [("status", c_uint64), ("addr", c_uint64), ("misc", c_uint64),
                ("mcg_status", c_uint64), ("bank", c_uint8), ("pad1", c_uint8 * 7),
                ("pad2", c_uint64 * 3)]


class kvm_msr_filter_range(_Struct):
    """struct kvm_msr_filter_range (arch/x86/include/uapi/asm/kvm.h)."""

    _fields_ = [("flags", c_uint32), ("nmsrs", c_uint32), ("base", c_uint32),
                ("bitmap", ctypes.POINTER(c_uint8))]


class kvm_msr_filter(_Struct):
    """struct kvm_msr_filter (arch/x86/include/uapi/asm/kvm.h): KVM_X86_SET_MSR_FILTER."""

    _fields_ = [("flags", c_uint32), ("ranges", kvm_msr_filter_range * 16)]


class kvm_stats_header(_Struct):
    """struct kvm_stats_header (include/uapi/linux/kvm.h): offset 0 of a binary stats fd."""

    _fields_ = [(n, c_uint32) for n in (
        "flags", "name_size", "num_desc", "id_offset", "desc_offset", "data_offset")]


class kvm_stats_desc(_Struct):
    """struct kvm_stats_desc (include/uapi/linux/kvm.h): the fixed 16-byte part.

    In the file each descriptor is followed by ``name_size`` bytes of NUL-padded name.
    """

    _fields_ = [("flags", c_uint32), ("exponent", c_int16), ("size", c_uint16),
                ("offset", c_uint32), ("bucket_size", c_uint32), ("name", c_char * 0)]


# --------------------------------------------------------------------------------------
# Variable-length helpers and offsetof


@functools.lru_cache(maxsize=None)
def _flex_type(base: type, count_field: str, array_field: str, n: int) -> type:
    fields = []
    for name, ctype, *rest in base._fields_:
        if name == array_field:
            ctype = ctype._type_ * n
        fields.append((name, ctype, *rest))
    return type(f"{base.__name__}_{n}", (_Struct,), {
        "_fields_": fields, "__doc__": f"struct {base.__name__} with {n} {array_field}.",
        "_count_field": count_field})


def _flex(base: type, count_field: str, array_field: str, n: int, items=()):
    if n < 0:
        raise ValueError(f"negative length {n}")
    obj = _flex_type(base, count_field, array_field, n)()
    setattr(obj, count_field, n)
    for i, item in enumerate(items):
        getattr(obj, array_field)[i] = item
    return obj


def kvm_msrs_with(n: int, entries=()):
    """A struct kvm_msrs with room for *n* ``entries`` and ``nmsrs = n``."""
    return _flex(kvm_msrs, "nmsrs", "entries", n, entries)


def kvm_msr_list_with(n: int):
    """A struct kvm_msr_list with room for *n* ``indices`` and ``nmsrs = n``."""
    return _flex(kvm_msr_list, "nmsrs", "indices", n)


def kvm_cpuid2_with(n: int, entries=()):
    """A struct kvm_cpuid2 with room for *n* ``entries`` and ``nent = n``."""
    return _flex(kvm_cpuid2, "nent", "entries", n, entries)


def kvm_irq_routing_with(n: int, entries=()):
    """A struct kvm_irq_routing with room for *n* ``entries`` and ``nr = n``."""
    return _flex(kvm_irq_routing, "nr", "entries", n, entries)


def kvm_signal_mask_with(n: int = 8):
    """A struct kvm_signal_mask with an *n*-byte ``sigset`` (8 for x86-64) and ``len = n``."""
    return _flex(kvm_signal_mask, "len", "sigset", n)


def kvm_coalesced_mmio_ring_with(n: int = 170):
    """The struct kvm_coalesced_mmio_ring type with *n* ``coalesced_mmio`` entries.

    Returns the *type* (map it with ``.from_buffer(mm, 2 * 4096)``); n defaults to
    KVM_COALESCED_MMIO_MAX (170 for 4 KiB pages).
    """
    return _flex_type(kvm_coalesced_mmio_ring, "first", "coalesced_mmio", n)


def _field_type(cls: type, name: str) -> type:
    for fname, ftype, *_ in cls._fields_:
        if fname == name:
            return ftype
        if fname in getattr(cls, "_anonymous_", ()):
            try:
                return _field_type(ftype, name)
            except KeyError:
                pass
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def offsetof(cls: type, path: str) -> int:
    """Byte offset of a (dotted) field path, like C's offsetof.

    >>> offsetof(kvm_vcpu_events, "smi.latched_init"), offsetof(kvm_irq_level, "level")
    (27, 4)
    """
    offset = 0
    for name in path.split("."):
        _field_type(cls, name)  # raises KeyError for unknown names
        offset += getattr(cls, name).offset
        cls = _field_type(cls, name)
        while issubclass(cls, ctypes.Array):
            cls = cls._type_
    return offset


__all__ += sorted(n for n in dir() if n.startswith("kvm_") and isinstance(globals()[n], type))
