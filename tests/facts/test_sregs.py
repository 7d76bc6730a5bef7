"""Reference §5: KVM_SET_SREGS / KVM_SET_REGS validation (generic x86 code)."""
import errno

import pytest

import kvmlab
from factkit import is_pvm


@pytest.fixture
def vcpu(vm):
    return vm.create_vcpu(0)


def _set(vcpu, **fields):
    s = vcpu.get_sregs()
    for k, v in fields.items():
        setattr(s, k, v)
    try:
        vcpu.set_sregs(s)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


@pytest.mark.parametrize("fields", [
    dict(cr0=0x80000010),                        # PG without PE
    dict(cr0=0x20000011),                        # NW without CD
    dict(cr0=(1 << 63) | 0x11),                  # reserved cr0 bit
    dict(cr4=1 << 31),                           # reserved cr4 bit
    dict(efer=0x500),                            # LME|LMA with paging off
    dict(cr0=0x80000011, cr4=0, efer=0x500),     # long mode without PAE
    dict(efer=0x400),                            # LMA without LME
    dict(apic_base=0xFEE00400),                  # x2APIC enable without xAPIC enable
], ids=["pg-without-pe", "nw-without-cd", "cr0-bit-63", "cr4-bit-31", "lme-lma-without-pg",
        "long-mode-without-pae", "lma-without-lme", "x2apic-without-xapic"])
def test_inconsistent_control_registers_fail_with_EINVAL(vcpu, fields):
    assert _set(vcpu, **fields) == errno.EINVAL


@pytest.mark.parametrize("fields", [
    dict(efer=0x801),                            # SCE | NXE
    dict(cr4=0x600),                             # OSFXSR | OSXMMEXCPT
    dict(cr8=15),
    dict(apic_base=0x12345900),                  # moved APIC base
], ids=["sce-nxe", "osfxsr", "cr8-15", "moved-apic-base"])
def test_consistent_values_are_accepted(vcpu, fields):
    assert _set(vcpu, **fields) == 0


def test_segment_descriptor_consistency_is_not_validated_by_set_sregs(vcpu):
    s = vcpu.get_sregs()
    s.cs.type, s.cs.present = 0x3, 0                 # cs as a not-present data segment
    s.tr.type, s.tr.s = 0x3, 1
    vcpu.set_sregs(s)


def test_set_regs_forces_rflags_bit_1_and_keeps_the_upper_half(kvm, vcpu):
    vcpu.set_regs(rflags=0xFFFF_0000_0000_0000)
    assert vcpu.get_regs().rflags == 0xFFFF_0000_0000_0002


def test_set_regs_keeps_rflags_vm_upstream_and_clears_it_on_pvm(kvm, vcpu):
    vcpu.set_regs(rflags=0x20002)
    assert vcpu.get_regs().rflags == (0x2 if is_pvm(kvm) else 0x20002)
