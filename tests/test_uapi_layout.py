"""kvmlab.uapi matches the kernel ABI measured in the reference (kvm-api.md §1, §4.3, §8.1).

The numbers here are copied from /work/shared/reference (gcc sizeof/offsetof on the 6.1
headers, kvm-probes/sizes.txt), so this test needs no compiler.
"""
import ctypes

import pytest

import kvmlab.uapi as uapi
from kvmlab.uapi import offsetof

SIZES = {
    "kvm_run": 2352, "kvm_sync_regs": 520, "kvm_regs": 144, "kvm_segment": 24, "kvm_dtable": 16,
    "kvm_sregs": 312, "kvm_sregs2": 320, "kvm_translation": 24, "kvm_userspace_memory_region": 32,
    "kvm_irqfd": 32, "kvm_ioeventfd": 64, "kvm_coalesced_mmio_zone": 16, "kvm_coalesced_mmio": 24,
    "kvm_coalesced_mmio_ring": 8, "kvm_irq_level": 8, "kvm_interrupt": 4, "kvm_dirty_log": 16,
    "kvm_guest_debug": 72, "kvm_guest_debug_arch": 64, "kvm_debug_exit_arch": 32, "kvm_msrs": 8,
    "kvm_msr_entry": 16, "kvm_msr_list": 4, "kvm_cpuid2": 8, "kvm_cpuid_entry2": 40, "kvm_fpu": 416,
    "kvm_lapic_state": 1024, "kvm_irqchip": 520, "kvm_pic_state": 16, "kvm_ioapic_state": 216,
    "kvm_vcpu_events": 64, "kvm_debugregs": 128, "kvm_mp_state": 4, "kvm_enable_cap": 104,
    "kvm_msi": 32, "kvm_irq_routing": 8, "kvm_irq_routing_entry": 48, "kvm_clock_data": 48,
    "kvm_xcrs": 392, "kvm_xsave": 4096, "kvm_stats_header": 24, "kvm_stats_desc": 16,
    "kvm_pit_config": 64, "kvm_pit_state2": 112, "kvm_signal_mask": 4, "kvm_one_reg": 16,
    "kvm_clear_dirty_log": 24, "kvm_create_device": 12, "kvm_device_attr": 24,
}

OFFSETS = [
    # struct kvm_run (§8.1)
    ("kvm_run", "request_interrupt_window", 0), ("kvm_run", "immediate_exit", 1),
    ("kvm_run", "padding1", 2), ("kvm_run", "exit_reason", 8),
    ("kvm_run", "ready_for_interrupt_injection", 12), ("kvm_run", "if_flag", 13),
    ("kvm_run", "flags", 14), ("kvm_run", "cr8", 16), ("kvm_run", "apic_base", 24),
    ("kvm_run", "padding", 32),
    ("kvm_run", "hw.hardware_exit_reason", 32),
    ("kvm_run", "fail_entry.hardware_entry_failure_reason", 32), ("kvm_run", "fail_entry.cpu", 40),
    ("kvm_run", "ex.exception", 32), ("kvm_run", "ex.error_code", 36),
    ("kvm_run", "io.direction", 32), ("kvm_run", "io.size", 33), ("kvm_run", "io.port", 34),
    ("kvm_run", "io.count", 36), ("kvm_run", "io.data_offset", 40),
    ("kvm_run", "debug.arch.exception", 32), ("kvm_run", "debug.arch.pad", 36),
    ("kvm_run", "debug.arch.pc", 40), ("kvm_run", "debug.arch.dr6", 48),
    ("kvm_run", "debug.arch.dr7", 56),
    ("kvm_run", "mmio.phys_addr", 32), ("kvm_run", "mmio.data", 40), ("kvm_run", "mmio.len", 48),
    ("kvm_run", "mmio.is_write", 52),
    ("kvm_run", "hypercall.nr", 32), ("kvm_run", "hypercall.args", 40),
    ("kvm_run", "hypercall.ret", 88), ("kvm_run", "hypercall.longmode", 96),
    ("kvm_run", "hypercall.flags", 96),
    ("kvm_run", "tpr_access.rip", 32), ("kvm_run", "tpr_access.is_write", 40),
    ("kvm_run", "internal.suberror", 32), ("kvm_run", "internal.ndata", 36),
    ("kvm_run", "internal.data", 40),
    ("kvm_run", "emulation_failure.suberror", 32), ("kvm_run", "emulation_failure.ndata", 36),
    ("kvm_run", "emulation_failure.flags", 40), ("kvm_run", "emulation_failure.insn_size", 48),
    ("kvm_run", "emulation_failure.insn_bytes", 49),
    ("kvm_run", "system_event.type", 32), ("kvm_run", "system_event.ndata", 36),
    ("kvm_run", "system_event.data", 40), ("kvm_run", "system_event.flags", 40),
    ("kvm_run", "eoi.vector", 32),
    ("kvm_run", "msr.error", 32), ("kvm_run", "msr.reason", 40), ("kvm_run", "msr.index", 44),
    ("kvm_run", "msr.data", 48),
    ("kvm_run", "notify.flags", 32),
    ("kvm_run", "memory_fault.flags", 32), ("kvm_run", "memory_fault.gpa", 40),
    ("kvm_run", "memory_fault.size", 48),
    ("kvm_run", "kvm_valid_regs", 288), ("kvm_run", "kvm_dirty_regs", 296),
    ("kvm_run", "s", 304), ("kvm_run", "s.padding", 304), ("kvm_run", "s.regs", 304),
    ("kvm_run", "s.regs.regs", 304), ("kvm_run", "s.regs.sregs", 448),
    ("kvm_run", "s.regs.events", 760),
    # registers (§4.3)
    ("kvm_regs", "rax", 0), ("kvm_regs", "rbx", 8), ("kvm_regs", "rcx", 16), ("kvm_regs", "rdx", 24),
    ("kvm_regs", "rsi", 32), ("kvm_regs", "rdi", 40), ("kvm_regs", "rsp", 48), ("kvm_regs", "rbp", 56),
    *[("kvm_regs", f"r{i}", 64 + 8 * (i - 8)) for i in range(8, 16)],
    ("kvm_regs", "rip", 128), ("kvm_regs", "rflags", 136),
    ("kvm_segment", "base", 0), ("kvm_segment", "limit", 8), ("kvm_segment", "selector", 12),
    ("kvm_segment", "type", 14), ("kvm_segment", "present", 15), ("kvm_segment", "dpl", 16),
    ("kvm_segment", "db", 17), ("kvm_segment", "s", 18), ("kvm_segment", "l", 19),
    ("kvm_segment", "g", 20), ("kvm_segment", "avl", 21), ("kvm_segment", "unusable", 22),
    ("kvm_segment", "padding", 23),
    ("kvm_dtable", "base", 0), ("kvm_dtable", "limit", 8), ("kvm_dtable", "padding", 10),
    *[("kvm_sregs", seg, 24 * i) for i, seg in enumerate(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"])],
    ("kvm_sregs", "gdt", 192), ("kvm_sregs", "idt", 208), ("kvm_sregs", "cr0", 224),
    ("kvm_sregs", "cr2", 232), ("kvm_sregs", "cr3", 240), ("kvm_sregs", "cr4", 248),
    ("kvm_sregs", "cr8", 256), ("kvm_sregs", "efer", 264), ("kvm_sregs", "apic_base", 272),
    ("kvm_sregs", "interrupt_bitmap", 280),
    ("kvm_sregs2", "apic_base", 272), ("kvm_sregs2", "flags", 280), ("kvm_sregs2", "pdptrs", 288),
    ("kvm_translation", "linear_address", 0), ("kvm_translation", "physical_address", 8),
    ("kvm_translation", "valid", 16), ("kvm_translation", "writeable", 17),
    ("kvm_translation", "usermode", 18), ("kvm_translation", "pad", 19),
    ("kvm_userspace_memory_region", "slot", 0), ("kvm_userspace_memory_region", "flags", 4),
    ("kvm_userspace_memory_region", "guest_phys_addr", 8),
    ("kvm_userspace_memory_region", "memory_size", 16),
    ("kvm_userspace_memory_region", "userspace_addr", 24),
    ("kvm_irqfd", "fd", 0), ("kvm_irqfd", "gsi", 4), ("kvm_irqfd", "flags", 8),
    ("kvm_irqfd", "resamplefd", 12), ("kvm_irqfd", "pad", 16),
    ("kvm_ioeventfd", "datamatch", 0), ("kvm_ioeventfd", "addr", 8), ("kvm_ioeventfd", "len", 16),
    ("kvm_ioeventfd", "fd", 20), ("kvm_ioeventfd", "flags", 24), ("kvm_ioeventfd", "pad", 28),
    ("kvm_coalesced_mmio_zone", "addr", 0), ("kvm_coalesced_mmio_zone", "size", 8),
    ("kvm_coalesced_mmio_zone", "pad", 12), ("kvm_coalesced_mmio_zone", "pio", 12),
    ("kvm_coalesced_mmio", "phys_addr", 0), ("kvm_coalesced_mmio", "len", 8),
    ("kvm_coalesced_mmio", "pad", 12), ("kvm_coalesced_mmio", "pio", 12),
    ("kvm_coalesced_mmio", "data", 16),
    ("kvm_coalesced_mmio_ring", "first", 0), ("kvm_coalesced_mmio_ring", "last", 4),
    ("kvm_coalesced_mmio_ring", "coalesced_mmio", 8),
    ("kvm_irq_level", "irq", 0), ("kvm_irq_level", "status", 0), ("kvm_irq_level", "level", 4),
    ("kvm_interrupt", "irq", 0),
    ("kvm_dirty_log", "slot", 0), ("kvm_dirty_log", "padding1", 4),
    ("kvm_dirty_log", "dirty_bitmap", 8), ("kvm_dirty_log", "padding2", 8),
    ("kvm_guest_debug", "control", 0), ("kvm_guest_debug", "pad", 4), ("kvm_guest_debug", "arch", 8),
    ("kvm_guest_debug", "arch.debugreg", 8),
    ("kvm_debug_exit_arch", "exception", 0), ("kvm_debug_exit_arch", "pad", 4),
    ("kvm_debug_exit_arch", "pc", 8), ("kvm_debug_exit_arch", "dr6", 16),
    ("kvm_debug_exit_arch", "dr7", 24),
    ("kvm_msrs", "nmsrs", 0), ("kvm_msrs", "pad", 4), ("kvm_msrs", "entries", 8),
    ("kvm_msr_entry", "index", 0), ("kvm_msr_entry", "reserved", 4), ("kvm_msr_entry", "data", 8),
    ("kvm_msr_list", "nmsrs", 0), ("kvm_msr_list", "indices", 4),
    ("kvm_cpuid2", "nent", 0), ("kvm_cpuid2", "padding", 4), ("kvm_cpuid2", "entries", 8),
    *[("kvm_cpuid_entry2", f, 4 * i) for i, f in enumerate(
        ["function", "index", "flags", "eax", "ebx", "ecx", "edx", "padding"])],
    ("kvm_fpu", "fpr", 0), ("kvm_fpu", "fcw", 128), ("kvm_fpu", "fsw", 130), ("kvm_fpu", "ftwx", 132),
    ("kvm_fpu", "last_opcode", 134), ("kvm_fpu", "last_ip", 136), ("kvm_fpu", "last_dp", 144),
    ("kvm_fpu", "xmm", 152), ("kvm_fpu", "mxcsr", 408),
    ("kvm_irqchip", "chip_id", 0), ("kvm_irqchip", "pad", 4), ("kvm_irqchip", "chip", 8),
    ("kvm_irqchip", "chip.pic", 8), ("kvm_irqchip", "chip.ioapic", 8),
    ("kvm_debugregs", "db", 0), ("kvm_debugregs", "dr6", 32), ("kvm_debugregs", "dr7", 40),
    ("kvm_debugregs", "flags", 48),
    ("kvm_stats_header", "flags", 0), ("kvm_stats_header", "name_size", 4),
    ("kvm_stats_header", "num_desc", 8), ("kvm_stats_header", "id_offset", 12),
    ("kvm_stats_header", "desc_offset", 16), ("kvm_stats_header", "data_offset", 20),
    ("kvm_stats_desc", "flags", 0), ("kvm_stats_desc", "exponent", 4), ("kvm_stats_desc", "size", 6),
    ("kvm_stats_desc", "offset", 8), ("kvm_stats_desc", "bucket_size", 12),
    ("kvm_stats_desc", "name", 16),
    ("kvm_pit_config", "flags", 0), ("kvm_pit_config", "pad", 4),
]

IOCTLS = [
    ("KVM_GET_API_VERSION", 0x0000ae00),
    ("KVM_CREATE_VM", 0x0000ae01),
    ("KVM_GET_MSR_INDEX_LIST", 0xc004ae02),
    ("KVM_CHECK_EXTENSION", 0x0000ae03),
    ("KVM_GET_VCPU_MMAP_SIZE", 0x0000ae04),
    ("KVM_GET_SUPPORTED_CPUID", 0xc008ae05),
    ("KVM_GET_EMULATED_CPUID", 0xc008ae09),
    ("KVM_GET_MSR_FEATURE_INDEX_LIST", 0xc004ae0a),
    ("KVM_CREATE_VCPU", 0x0000ae41),
    ("KVM_GET_DIRTY_LOG", 0x4010ae42),
    ("KVM_SET_NR_MMU_PAGES", 0x0000ae44),
    ("KVM_GET_NR_MMU_PAGES", 0x0000ae45),
    ("KVM_SET_USER_MEMORY_REGION", 0x4020ae46),
    ("KVM_SET_TSS_ADDR", 0x0000ae47),
    ("KVM_SET_IDENTITY_MAP_ADDR", 0x4008ae48),
    ("KVM_CREATE_IRQCHIP", 0x0000ae60),
    ("KVM_IRQ_LINE", 0x4008ae61),
    ("KVM_GET_IRQCHIP", 0xc208ae62),
    ("KVM_SET_IRQCHIP", 0x8208ae63),
    ("KVM_CREATE_PIT", 0x0000ae64),
    ("KVM_IRQ_LINE_STATUS", 0xc008ae67),
    ("KVM_REGISTER_COALESCED_MMIO", 0x4010ae67),
    ("KVM_UNREGISTER_COALESCED_MMIO", 0x4010ae68),
    ("KVM_SET_GSI_ROUTING", 0x4008ae6a),
    ("KVM_IRQFD", 0x4020ae76),
    ("KVM_CREATE_PIT2", 0x4040ae77),
    ("KVM_SET_BOOT_CPU_ID", 0x0000ae78),
    ("KVM_IOEVENTFD", 0x4040ae79),
    ("KVM_SET_CLOCK", 0x4030ae7b),
    ("KVM_GET_CLOCK", 0x8030ae7c),
    ("KVM_SIGNAL_MSI", 0x4020aea5),
    ("KVM_ENABLE_CAP", 0x4068aea3),
    ("KVM_CREATE_DEVICE", 0xc00caee0),
    ("KVM_GET_STATS_FD", 0x0000aece),
    ("KVM_CLEAR_DIRTY_LOG", 0xc018aec0),
    ("KVM_RUN", 0x0000ae80),
    ("KVM_GET_REGS", 0x8090ae81),
    ("KVM_SET_REGS", 0x4090ae82),
    ("KVM_GET_SREGS", 0x8138ae83),
    ("KVM_SET_SREGS", 0x4138ae84),
    ("KVM_TRANSLATE", 0xc018ae85),
    ("KVM_INTERRUPT", 0x4004ae86),
    ("KVM_GET_MSRS", 0xc008ae88),
    ("KVM_SET_MSRS", 0x4008ae89),
    ("KVM_SET_CPUID", 0x4008ae8a),
    ("KVM_SET_SIGNAL_MASK", 0x4004ae8b),
    ("KVM_GET_FPU", 0x81a0ae8c),
    ("KVM_SET_FPU", 0x41a0ae8d),
    ("KVM_GET_LAPIC", 0x8400ae8e),
    ("KVM_SET_LAPIC", 0x4400ae8f),
    ("KVM_SET_CPUID2", 0x4008ae90),
    ("KVM_GET_CPUID2", 0xc008ae91),
    ("KVM_GET_MP_STATE", 0x8004ae98),
    ("KVM_SET_MP_STATE", 0x4004ae99),
    ("KVM_NMI", 0x0000ae9a),
    ("KVM_SET_GUEST_DEBUG", 0x4048ae9b),
    ("KVM_GET_VCPU_EVENTS", 0x8040ae9f),
    ("KVM_SET_VCPU_EVENTS", 0x4040aea0),
    ("KVM_GET_DEBUGREGS", 0x8080aea1),
    ("KVM_SET_DEBUGREGS", 0x4080aea2),
    ("KVM_GET_XSAVE", 0x9000aea4),
    ("KVM_SET_XSAVE", 0x5000aea5),
    ("KVM_GET_XCRS", 0x8188aea6),
    ("KVM_SET_XCRS", 0x4188aea7),
    ("KVM_GET_SREGS2", 0x8140aecc),
    ("KVM_SET_SREGS2", 0x4140aecd),
    ("KVM_GET_XSAVE2", 0x9000aecf),
    ("KVM_GET_ONE_REG", 0x4010aeab),
    ("KVM_SET_ONE_REG", 0x4010aeac),
    ("KVM_KVMCLOCK_CTRL", 0x0000aead),
    ("KVM_SMI", 0x0000aeb7),
]


@pytest.mark.parametrize("name,size", sorted(SIZES.items()))
def test_every_struct_has_the_size_gcc_gives_it(name, size):
    assert ctypes.sizeof(getattr(uapi, name)) == size


@pytest.mark.parametrize("struct,path,offset", OFFSETS)
def test_every_key_field_sits_at_the_offset_gcc_gives_it(struct, path, offset):
    assert offsetof(getattr(uapi, struct), path) == offset


@pytest.mark.parametrize("name,number", IOCTLS)
def test_every_ioctl_request_number_matches_the_headers(name, number):
    assert getattr(uapi, name) == number
    assert uapi.ioctl_name(number) == name


def test_kvm_run_is_2352_bytes_with_the_exit_union_at_32():
    assert ctypes.sizeof(uapi.kvm_run) == 2352
    assert uapi.kvm_run.io.offset == uapi.kvm_run.mmio.offset == uapi.kvm_run.padding.offset == 32
    assert ctypes.sizeof(uapi.run.kvm_run_exit) == 256
    assert ctypes.sizeof(uapi.run.kvm_run_s) == 2048


def test_the_exit_union_reads_like_c_on_a_mapped_buffer():
    buf = bytearray(4096)
    run = uapi.kvm_run.from_buffer(buf)
    buf[8] = uapi.KVM_EXIT_IO
    buf[32:48] = bytes([1, 2, 0xF8, 0x03, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0])
    assert run.exit_reason == uapi.ExitReason.IO
    assert (run.io.direction, run.io.size, run.io.port, run.io.count, run.io.data_offset) == (
        uapi.KVM_EXIT_IO_OUT, 2, 0x3F8, 1, 4096)
    run.mmio.data[0] = 0xAB
    assert buf[40] == 0xAB
    run.s.regs.regs.rip = 0x1005
    assert int.from_bytes(buf[304 + 128:304 + 136], "little") == 0x1005
    del run  # release the buffer export


def test_the_exit_union_members_have_every_contract_name():
    for name in ["io", "mmio", "debug", "internal", "emulation_failure", "fail_entry", "hw",
                 "system_event", "ex", "hypercall", "tpr_access", "eoi", "msr", "notify",
                 "memory_fault", "padding"]:
        assert hasattr(uapi.kvm_run, name), name
    assert uapi.kvm_run.padding.size == 256


def test_variable_length_helpers_size_the_array_and_set_the_count():
    msrs = uapi.kvm_msrs_with(3)
    assert (msrs.nmsrs, len(msrs.entries), ctypes.sizeof(msrs)) == (3, 3, 8 + 3 * 16)
    assert type(msrs).entries.offset == 8
    lst = uapi.kvm_msr_list_with(5)
    assert (lst.nmsrs, len(lst.indices), ctypes.sizeof(lst)) == (5, 5, 4 + 5 * 4)
    cpuid = uapi.kvm_cpuid2_with(uapi.KVM_MAX_CPUID_ENTRIES)
    assert (cpuid.nent, len(cpuid.entries), ctypes.sizeof(cpuid)) == (256, 256, 8 + 256 * 40)
    routing = uapi.kvm_irq_routing_with(2)
    assert (routing.nr, ctypes.sizeof(routing)) == (2, 8 + 2 * 48)
    ring = uapi.kvm_coalesced_mmio_ring_with(uapi.KVM_COALESCED_MMIO_MAX)
    assert ctypes.sizeof(ring) == 8 + 170 * 24 <= 4096
    assert type(uapi.kvm_msrs_with(3)) is type(msrs)  # types are cached per length
    e = uapi.kvm_msr_entry(index=0x10, data=5)
    assert uapi.kvm_msrs_with(1, [e]).entries[0].index == 0x10


def test_exit_reasons_exist_as_enum_members_and_module_constants():
    assert len(uapi.ExitReason) == 42
    for member in uapi.ExitReason:
        assert getattr(uapi, "KVM_EXIT_" + member.name) == member.value
    assert uapi.ExitReason(2).name == "IO" and uapi.KVM_EXIT_NOTIFY == 37
    assert uapi.KVM_EXIT_MEMORY_FAULT == 39 and uapi.KVM_EXIT_IO_IN == 0 and uapi.KVM_EXIT_IO_OUT == 1


def test_caps_exist_as_enum_members_and_module_constants():
    for name, member in uapi.Cap.__members__.items():
        assert getattr(uapi, "KVM_CAP_" + name) == member.value
    expected = {"IRQCHIP": 0, "USER_MEMORY": 3, "NR_MEMSLOTS": 10, "COALESCED_MMIO": 15,
                "IRQ_ROUTING": 25, "IOEVENTFD": 36, "SYNC_REGS": 74, "READONLY_MEM": 81,
                "IMMEDIATE_EXIT": 136, "SET_GUEST_DEBUG2": 195, "BINARY_STATS_FD": 203,
                "XSAVE2": 208, "DIRTY_LOG_RING_ACQ_REL": 223, "USER_MEMORY2": 231,
                "GUEST_MEMFD_FLAGS": 244}
    assert {k: uapi.Cap[k].value for k in expected} == expected


def test_flag_and_page_constants_have_the_kernels_values():
    u = uapi
    assert (u.KVM_API_VERSION, u.KVM_PIO_PAGE_OFFSET, u.KVM_COALESCED_MMIO_PAGE_OFFSET,
            u.KVM_COALESCED_MMIO_MAX, u.KVM_DIRTY_LOG_PAGE_OFFSET) == (12, 1, 2, 170, 64)
    assert (u.KVM_MEM_LOG_DIRTY_PAGES, u.KVM_MEM_READONLY) == (1, 2)
    assert (u.KVM_IOEVENTFD_FLAG_DATAMATCH, u.KVM_IOEVENTFD_FLAG_PIO, u.KVM_IOEVENTFD_FLAG_DEASSIGN,
            u.KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, u.KVM_IOEVENTFD_VALID_FLAG_MASK) == (1, 2, 4, 8, 0x1F)
    assert (u.KVM_IRQFD_FLAG_DEASSIGN, u.KVM_IRQFD_FLAG_RESAMPLE) == (1, 2)
    assert (u.KVM_GUESTDBG_ENABLE, u.KVM_GUESTDBG_SINGLESTEP, u.KVM_GUESTDBG_USE_SW_BP,
            u.KVM_GUESTDBG_USE_HW_BP, u.KVM_GUESTDBG_INJECT_DB, u.KVM_GUESTDBG_INJECT_BP,
            u.KVM_GUESTDBG_BLOCKIRQ) == (1, 2, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000)
    assert (u.KVM_INTERNAL_ERROR_EMULATION, u.KVM_INTERNAL_ERROR_SIMUL_EX,
            u.KVM_INTERNAL_ERROR_DELIVERY_EV, u.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON) == (1, 2, 3, 4)
    assert [getattr(u, "KVM_SYSTEM_EVENT_" + n) for n in
            ["SHUTDOWN", "RESET", "CRASH", "WAKEUP", "SUSPEND", "SEV_TERM"]] == [1, 2, 3, 4, 5, 6]
    assert (u.KVM_MP_STATE_RUNNABLE, u.KVM_MP_STATE_HALTED, u.KVM_MP_STATE_SUSPENDED) == (0, 3, 10)
    assert (u.KVM_SYNC_X86_REGS, u.KVM_SYNC_X86_SREGS, u.KVM_SYNC_X86_EVENTS) == (1, 2, 4)
    assert (u.KVM_STATS_TYPE_MASK, u.KVM_STATS_UNIT_MASK, u.KVM_STATS_BASE_MASK) == (0xF, 0xF0, 0xF00)
    assert (u.KVM_STATS_TYPE_LOG_HIST, u.KVM_STATS_UNIT_SECONDS, u.KVM_STATS_BASE_POW2) == (4, 0x20, 0x100)
    assert (u.KVM_STATS_UNIT_SHIFT, u.KVM_STATS_BASE_SHIFT) == (4, 8)


def test_ioctl_encoding_round_trips_through_the_decoders():
    req = uapi.KVM_SET_USER_MEMORY_REGION
    assert (uapi._IOC_DIR(req), uapi._IOC_TYPE(req), uapi._IOC_NR(req), uapi._IOC_SIZE(req)) == (
        uapi._IOC_WRITE, uapi.KVMIO, 0x46, 32)
    assert uapi.ioctl_name(0xAEFF) == "0x0000aeff"


def test_the_package_imports_only_the_standard_library():
    import ast
    import pathlib
    import sys

    allowed = set(sys.stdlib_module_names) | {"__future__"}
    for path in pathlib.Path(uapi.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


CONTRACT_STRUCTS = """kvm_regs kvm_segment kvm_dtable kvm_sregs kvm_run kvm_userspace_memory_region
kvm_translation kvm_irqfd kvm_ioeventfd kvm_coalesced_mmio_zone kvm_coalesced_mmio
kvm_coalesced_mmio_ring kvm_irq_level kvm_interrupt kvm_dirty_log kvm_guest_debug
kvm_guest_debug_arch kvm_debug_exit_arch kvm_msr_entry kvm_msrs kvm_msr_list kvm_cpuid_entry2
kvm_cpuid2 kvm_fpu kvm_lapic_state kvm_irqchip kvm_pic_state kvm_ioapic_state kvm_pit_config
kvm_vcpu_events kvm_debugregs kvm_mp_state kvm_enable_cap kvm_msi kvm_irq_routing_entry
kvm_irq_routing kvm_clock_data kvm_xsave kvm_sregs2 kvm_stats_header kvm_stats_desc
kvm_sync_regs""".split()


def test_every_struct_named_in_the_contract_is_exported_as_a_ctypes_type():
    for name in CONTRACT_STRUCTS:
        cls = getattr(uapi, name)
        assert issubclass(cls, ctypes.Structure) and cls.__name__ == name
        assert cls.__doc__ and cls.__doc__.startswith(f"struct {name} (")
