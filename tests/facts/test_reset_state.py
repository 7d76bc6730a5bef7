"""Reference §4.2: the vCPU state right after KVM_CREATE_VCPU."""
import pytest

import kvmlab
from factkit import upstream_or_pvm


@pytest.fixture
def vcpu(vm):
    return vm.create_vcpu(0)


def test_general_registers_are_zero_except_rip_rflags_and_rdx(vcpu):
    r = vcpu.get_regs()
    assert (r.rip, r.rflags, r.rdx) == (0xFFF0, 0x2, 0x600)
    for name in ("rax", "rbx", "rcx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12",
                 "r13", "r14", "r15"):
        assert getattr(r, name) == 0, name


def _seg(s):
    return (s.base, s.limit, s.selector, s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable)


def test_cs_is_the_reset_vector_segment(vcpu):
    assert _seg(vcpu.get_sregs().cs) == (0xFFFF0000, 0xFFFF, 0xF000, 0xB, 1, 0, 0, 1, 0, 0, 0, 0)


@pytest.mark.parametrize("name", ["ds", "es", "fs", "gs", "ss"])
def test_data_segments_are_real_mode_64k_at_0(vcpu, name):
    assert _seg(getattr(vcpu.get_sregs(), name)) == (0, 0xFFFF, 0, 0x3, 1, 0, 0, 1, 0, 0, 0, 0)


def test_tr_and_ldt_are_present_system_segments(vcpu):
    s = vcpu.get_sregs()
    assert _seg(s.tr) == (0, 0xFFFF, 0, 0xB, 1, 0, 0, 0, 0, 0, 0, 0)
    assert _seg(s.ldt) == (0, 0xFFFF, 0, 0x2, 1, 0, 0, 0, 0, 0, 0, 0)


def test_gdt_and_idt_have_base_0_and_limit_0xffff(vcpu):
    s = vcpu.get_sregs()
    assert (s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit) == (0, 0xFFFF, 0, 0xFFFF)


def test_control_registers_efer_and_the_interrupt_bitmap(vcpu):
    s = vcpu.get_sregs()
    assert s.cr0 == 0x60000010           # CD | NW | ET
    assert (s.cr2, s.cr3, s.cr4, s.cr8, s.efer) == (0, 0, 0, 0, 0)
    assert list(s.interrupt_bitmap) == [0, 0, 0, 0]


def test_apic_base_marks_vcpu_0_as_the_bsp_and_others_not(vm):
    v0, v1 = vm.create_vcpu(0), vm.create_vcpu(1)
    assert v0.get_sregs().apic_base == 0xFEE00900
    assert v1.get_sregs().apic_base == 0xFEE00800


@pytest.mark.parametrize("index,value", [
    (0x277, 0x0007040600070406),    # PAT
    (0x1A0, 0x1),                   # MISC_ENABLE
    (0xC0000080, 0), (0xC0000081, 0), (0xC0000082, 0), (0xC0000100, 0), (0xC0000102, 0),
    (0x174, 0), (0x2FF, 0), (0x17A, 0), (0x3B, 0),
])
def test_msrs_have_their_reset_values(vcpu, index, value):
    assert vcpu.get_msrs([index]) == {index: value}


def test_the_tsc_starts_non_zero(vcpu):
    assert vcpu.get_msrs([0x10])[0x10] != 0


def test_debug_registers_reset_to_dr6_0xffff0ff0_and_dr7_0x400(vcpu):
    d = vcpu.get_debugregs()
    assert list(d.db) == [0, 0, 0, 0]
    assert (d.dr6, d.dr7) == (0xFFFF0FF0, 0x400)


def test_the_fpu_control_word_is_0x37f_and_the_status_and_tag_words_are_0(vcpu):
    f = vcpu.get_fpu()
    assert (f.fcw, f.fsw, f.ftwx) == (0x37F, 0, 0)


def test_mxcsr_reads_0x1f80_upstream_and_0_on_pvm(kvm, vcpu):
    assert vcpu.get_fpu().mxcsr == upstream_or_pvm(kvm, upstream=0x1F80, pvm=0)


def test_mp_state_without_irqchip_is_runnable(vcpu):
    assert vcpu.get_mp_state() == kvmlab.KVM_MP_STATE_RUNNABLE == 0


def test_with_irqchip_the_bsp_is_runnable_and_an_ap_uninitialized(vm):
    vm.create_irqchip()
    v0, v1 = vm.create_vcpu(0), vm.create_vcpu(1)
    assert v0.get_mp_state() == kvmlab.KVM_MP_STATE_RUNNABLE
    assert v1.get_mp_state() == kvmlab.KVM_MP_STATE_UNINITIALIZED == 1


def _reg(lapic: bytes, off: int) -> int:
    return int.from_bytes(lapic[off:off + 4], "little")


def test_the_lapic_at_reset_is_version_0x14_software_disabled_with_lvt0_extint_on_the_bsp(vm):
    vm.create_irqchip()
    lapic = vm.create_vcpu(0).get_lapic()
    assert _reg(lapic, 0x30) == 0x00050014    # version 0x14, 6 LVT entries
    assert _reg(lapic, 0xF0) == 0xFF          # SVR: vector 0xFF, software-disabled
    assert _reg(lapic, 0x350) == 0x700        # LVT0: ExtINT, unmasked
    assert _reg(lapic, 0x360) == 0x10000      # LVT1: masked
    assert _reg(lapic, 0x80) == 0             # TPR


def test_vcpu_events_flags_say_nmi_pending_shadow_and_smm_are_valid(vcpu):
    assert vcpu.get_vcpu_events().flags == 0x0D


def test_a_fresh_vcpu_has_an_empty_cpuid_table(vcpu):
    assert vcpu.get_cpuid2() == []


def test_kvm_run_on_an_uninitialized_ap_blocks_until_a_signal(vm):
    from factkit import run
    vm.create_irqchip()
    vm.set_user_memory_region(0, 0, kvmlab.GuestMemory(0x10000))
    vm.create_vcpu(0)
    ap = vm.create_vcpu(1)
    ex = run(ap, timeout=0.2, allow_timeout=True)       # waits for INIT/SIPI: only the kick ends it
    assert ex.reason == kvmlab.KVM_EXIT_INTR
    assert ap.get_mp_state() == kvmlab.KVM_MP_STATE_UNINITIALIZED
