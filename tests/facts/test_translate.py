"""Reference §10: KVM_TRANSLATE."""
import pytest

import kvmlab
import modes
from factkit import set_real_mode

NOT_MAPPED = 0xFFFFFFFFFFFFFFFF


def _t(vcpu, la):
    t = vcpu.translate(la)
    return (t.physical_address, t.valid, t.writeable, t.usermode)


@pytest.mark.parametrize("la", [0x1234, 0xFFFFF, 0x12345678, 0xFFFFFFFFFFFF])
def test_in_real_mode_every_linear_address_translates_to_itself(vm, la):
    vm.set_user_memory_region(0, 0, kvmlab.GuestMemory(0x10000))
    v = vm.create_vcpu(0)
    set_real_mode(v, 0x1000)
    assert _t(v, la) == (la, True, True, False)


def test_in_protected_mode_without_paging_translation_is_the_identity(vm):
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(0, 0, mem)
    v = vm.create_vcpu(0)
    modes.set_protected_flat(v, mem, 0x1000)
    assert _t(v, 0x12345678) == (0x12345678, True, True, False)


@pytest.fixture
def long_mode_vcpu(vm):
    mem = kvmlab.GuestMemory(0x200000)
    vm.set_user_memory_region(0, 0, mem)
    cr3 = modes.build_identity_map(mem, gib=1)          # [0, 1 GiB) with 2 MiB pages
    q = mem.view("<u8")
    va = 0x7F0000201000                                  # pml4[254] -> pdpt[0] -> pd[1] -> pt[1]
    q[(cr3 + 8 * ((va >> 39) & 511)) // 8] = 0x20000 | 0x7
    q[0x20000 // 8] = 0x21000 | 0x7
    q[(0x21000 + 8 * ((va >> 21) & 511)) // 8] = 0x22000 | 0x7
    q[(0x22000 + 8 * ((va >> 12) & 511)) // 8] = 0x123000 | 0x5       # present, user, READ-ONLY
    v = vm.create_vcpu(0)
    modes.set_long_mode(v, mem, 0x1000, cr3)
    return v


@pytest.mark.parametrize("la", [0x1000, 0x1FFFFF, 0x3FFFFFFF])
def test_in_long_mode_identity_mapped_2mib_pages_translate(long_mode_vcpu, la):
    assert _t(long_mode_vcpu, la) == (la, True, True, False)


def test_a_read_only_user_4kib_page_still_reports_writeable_1_and_usermode_0(long_mode_vcpu):
    assert _t(long_mode_vcpu, 0x7F0000201010) == (0x123010, True, True, False)


@pytest.mark.parametrize("la", [0x40000000, 0x7F0000202000, 0x800000000000],
                         ids=["beyond-the-map", "not-present-pte", "non-canonical"])
def test_an_unmapped_or_non_canonical_address_is_invalid_with_all_ones_and_no_errno(long_mode_vcpu, la):
    pa, valid, _, _ = _t(long_mode_vcpu, la)
    assert (pa, valid) == (NOT_MAPPED, False)
