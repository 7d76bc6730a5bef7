"""Reference §6: KVM_GET_MSRS / KVM_SET_MSRS and the MSR index list."""
import errno

import pytest

import kvmlab
from kvmlab import uapi
from factkit import real_mode, upstream_or_pvm

TSC, PAT, EFER, LSTAR, APIC_BASE, BOGUS = 0x10, 0x277, 0xC0000080, 0xC0000082, 0x1B, 0x12345678


@pytest.fixture
def vcpu(vm):
    return vm.create_vcpu(0)


def test_get_msrs_stops_at_the_first_unknown_msr_and_returns_how_many_it_read(vcpu):
    assert list(vcpu.get_msrs([TSC, BOGUS, PAT])) == [TSC]


def test_set_msrs_stops_at_the_first_unknown_msr_and_returns_how_many_it_wrote(vcpu):
    assert vcpu.set_msrs({PAT: 0x0007040600070406, BOGUS: 1}) == 1


def _msrs_errno(kvm, vcpu, n, request):
    buf = uapi.kvm_msrs_with(n)
    buf.nmsrs = n
    for i in range(n):
        buf.entries[i].index = PAT
    try:
        return 0, kvm.backend.ioctl(vcpu.fd, request, buf)
    except OSError as e:
        return e.errno, None


def test_255_msrs_in_one_call_are_accepted_and_256_fail_with_E2BIG(kvm, vcpu):
    assert _msrs_errno(kvm, vcpu, 255, uapi.KVM_GET_MSRS) == (0, 255)
    assert _msrs_errno(kvm, vcpu, 256, uapi.KVM_GET_MSRS) == (errno.E2BIG, None)


@pytest.mark.parametrize("index,value", [
    (EFER, 1 << 20),                      # reserved EFER bit
    (LSTAR, 0x0000800000000000),          # non-canonical
    (APIC_BASE, 0xFEE00D00),              # x2APIC enable without x2APIC in the guest CPUID
], ids=["efer-reserved", "lstar-non-canonical", "apic-base-x2apic"])
def test_invalid_values_are_rejected_by_returning_0_without_errno(vcpu, index, value):
    assert vcpu.set_msrs({index: value}) == 0


def test_efer_lma_cannot_be_set_by_the_host_it_follows_the_paging_mode(vcpu):
    assert vcpu.set_msrs({EFER: 0xD01}) == 1
    assert vcpu.get_msrs([EFER]) == {EFER: 0x901}


def test_a_pat_with_invalid_memory_types_is_rejected_upstream_and_accepted_on_pvm(kvm, vcpu):
    assert vcpu.set_msrs({PAT: 2**64 - 1}) == upstream_or_pvm(kvm, upstream=0, pvm=1)


def test_the_msr_index_list_holds_the_syscall_sysenter_tsc_and_pat_msrs(kvm):
    lst = set(kvm.get_msr_index_list())
    assert {0x174, 0x175, 0x176, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084, 0xC0000102, TSC, PAT} <= lst
    assert not {EFER, 0xC0000100, APIC_BASE} & lst


def test_msrs_outside_the_index_list_such_as_efer_fs_base_and_apic_base_are_readable(vcpu):
    got = vcpu.get_msrs([EFER, 0xC0000100, APIC_BASE])
    assert got == {EFER: 0, 0xC0000100: 0, APIC_BASE: 0xFEE00900}


def test_a_guest_rdmsr_of_an_unknown_msr_gets_gp_without_an_exit(vm):
    g = real_mode(vm, "mov ecx, 0x12345678\n rdmsr\n hlt", ivt_stubs=16)
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x0d"), ("HLT",)]
