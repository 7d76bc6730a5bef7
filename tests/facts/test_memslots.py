"""Reference §3.2: the KVM_SET_USER_MEMORY_REGION validation and errno matrix."""
import errno
import os

import pytest

import kvmlab

PAGE = 4096
RO, DIRTY = kvmlab.KVM_MEM_READONLY, kvmlab.KVM_MEM_LOG_DIRTY_PAGES


def _err(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


@pytest.fixture
def mem():
    return kvmlab.GuestMemory(0x10000)


def region(vm, slot, gpa, size, uaddr, flags=0):
    return _err(vm.set_user_memory_region, slot, gpa, flags=flags, userspace_addr=uaddr, memory_size=size)


def test_a_page_aligned_slot_is_accepted(vm, mem):
    assert region(vm, 0, 0, 0x10000, mem.address) == 0


@pytest.mark.parametrize("gpa", [0x20001, 0x20800])
def test_a_guest_physical_address_that_is_not_page_aligned_fails_with_EINVAL(vm, mem, gpa):
    assert region(vm, 1, gpa, PAGE, mem.address) == errno.EINVAL


@pytest.mark.parametrize("size", [0x1001, 0x800])
def test_a_size_that_is_not_a_page_multiple_fails_with_EINVAL(vm, mem, size):
    assert region(vm, 1, 0x20000, size, mem.address) == errno.EINVAL


@pytest.mark.parametrize("delta", [1, 0x800])
def test_a_userspace_address_that_is_not_page_aligned_fails_with_EINVAL(vm, mem, delta):
    assert region(vm, 1, 0x20000, PAGE, mem.address + delta) == errno.EINVAL


@pytest.mark.parametrize("gpa,size", [(0x8000, 0x10000), (0xF000, 0x1000), (0, 0x1000)])
def test_a_new_slot_overlapping_an_existing_slot_fails_with_EEXIST(vm, mem, gpa, size):
    vm.set_user_memory_region(0, 0, mem)
    assert region(vm, 1, gpa, size, mem.address) == errno.EEXIST


def test_an_adjacent_slot_is_accepted(vm, mem):
    vm.set_user_memory_region(0, 0, mem)
    assert region(vm, 1, 0x10000, PAGE, mem.address) == 0


def test_two_slots_may_share_the_same_host_memory(vm, mem):
    vm.set_user_memory_region(0, 0, mem)
    assert region(vm, 2, 0x40000, PAGE, mem.address) == 0


def test_the_highest_slot_id_is_nr_memslots_minus_one(vm, mem):
    assert region(vm, 32763, 0x100000, PAGE, mem.address) == 0


@pytest.mark.parametrize("slot", [32764, 0xFFFF])
def test_a_slot_id_at_or_above_nr_memslots_fails_with_EINVAL(vm, mem, slot):
    assert region(vm, slot, 0x100000, PAGE, mem.address) == errno.EINVAL


@pytest.mark.parametrize("slot", [0x10000, 0x10001])
def test_a_slot_in_address_space_1_fails_with_EINVAL(kvm, vm, mem, slot):
    if kvm.check_extension(kvmlab.KVM_CAP_MULTI_ADDRESS_SPACE) > 1:
        pytest.skip("this KVM has a second address space (SMM), so address space 1 is valid")
    assert region(vm, slot, 0x100000, PAGE, mem.address) == errno.EINVAL


def test_deleting_an_existing_slot_ignores_the_other_fields(vm, mem):
    vm.set_user_memory_region(2, 0x40000, mem)
    assert region(vm, 2, 0x12345000, 0, 0x5000, flags=DIRTY) == 0


def test_deleting_a_slot_that_does_not_exist_fails_with_EINVAL(vm, mem):
    assert region(vm, 77, 0, 0, 0) == errno.EINVAL


def test_deleting_a_slot_twice_fails_with_EINVAL_the_second_time(vm, mem):
    vm.set_user_memory_region(2, 0x40000, mem)
    assert region(vm, 2, 0x40000, 0, mem.address) == 0
    assert region(vm, 2, 0x40000, 0, mem.address) == errno.EINVAL


def test_deleting_a_slot_id_out_of_range_fails_with_EINVAL(vm):
    assert region(vm, 32764, 0, 0, 0) == errno.EINVAL


@pytest.mark.parametrize("new_size", [0x20000, 0x8000])
def test_resizing_an_existing_slot_fails_with_EINVAL(vm, new_size):
    big = kvmlab.GuestMemory(0x20000)
    assert region(vm, 0, 0, 0x10000, big.address) == 0
    assert region(vm, 0, 0, new_size, big.address) == errno.EINVAL


def test_moving_an_existing_slot_to_a_new_address_is_accepted(vm, mem):
    vm.set_user_memory_region(1, 0x10000, mem)
    assert region(vm, 1, 0x50000, 0x10000, mem.address) == 0


def test_changing_the_userspace_address_of_an_existing_slot_fails_with_EINVAL(vm):
    big = kvmlab.GuestMemory(0x2000)
    assert region(vm, 1, 0x10000, PAGE, big.address) == 0
    assert region(vm, 1, 0x10000, PAGE, big.address + PAGE) == errno.EINVAL


def test_toggling_log_dirty_pages_on_an_existing_slot_is_accepted_even_with_a_move(vm, mem):
    vm.set_user_memory_region(1, 0x10000, mem)
    assert region(vm, 1, 0x10000, 0x10000, mem.address, flags=DIRTY) == 0
    assert region(vm, 1, 0x10000, 0x10000, mem.address, flags=0) == 0
    assert region(vm, 1, 0x60000, 0x10000, mem.address, flags=DIRTY) == 0


def test_adding_readonly_to_an_existing_slot_fails_with_EINVAL(vm, mem):
    vm.set_user_memory_region(1, 0x10000, mem)
    assert region(vm, 1, 0x10000, 0x10000, mem.address, flags=RO) == errno.EINVAL


def test_removing_readonly_from_an_existing_slot_fails_with_EINVAL(vm, mem):
    vm.set_user_memory_region(1, 0x10000, mem, flags=RO)
    assert region(vm, 1, 0x10000, 0x10000, mem.address, flags=0) == errno.EINVAL


@pytest.mark.parametrize("flags", [RO, RO | DIRTY])
def test_a_new_readonly_slot_is_accepted(vm, mem, flags):
    assert region(vm, 3, 0x60000, PAGE, mem.address, flags=flags) == 0


@pytest.mark.parametrize("flags", [0x4, 0x8, 1 << 16])
def test_unknown_flag_bits_fail_with_EINVAL(vm, mem, flags):
    assert region(vm, 5, 0x60000, PAGE, mem.address, flags=flags) == errno.EINVAL


def test_a_slot_whose_end_wraps_around_2_to_the_64_fails_with_EINVAL(vm, mem):
    assert region(vm, 5, 2**64 - PAGE, 2 * PAGE, mem.address) == errno.EINVAL


def test_a_slot_may_end_exactly_at_2_to_the_52(vm, mem):
    assert region(vm, 5, (1 << 52) - PAGE, PAGE, mem.address) == 0


@pytest.mark.parametrize("gpa", [1 << 52, 1 << 53])
def test_a_slot_ending_above_2_to_the_52_fails_with_EINVAL(vm, mem, gpa):
    assert region(vm, 5, gpa, PAGE, mem.address) == errno.EINVAL


def test_a_slot_of_2_to_the_31_pages_fails_with_EINVAL(vm):
    assert region(vm, 7, 0, (1 << 31) * PAGE, 0x10000000000) == errno.EINVAL


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("KVMLAB_FACTS_SLOW"),
                    reason="KVM allocates per-page metadata for an 8 TiB slot (20-80 s on hw); set KVMLAB_FACTS_SLOW=1")
def test_a_slot_of_2_to_the_31_minus_1_pages_is_accepted(vm):
    assert region(vm, 7, 0, ((1 << 31) - 1) * PAGE, 0x10000000000) == 0


def test_a_kernel_half_userspace_address_fails_with_EINVAL(vm):
    assert region(vm, 6, 0x90000, PAGE, 0xffff888000000000) == errno.EINVAL


@pytest.mark.parametrize("uaddr", [0x10000000000, 0])
def test_an_unmapped_userspace_address_is_accepted_because_only_the_range_is_checked(vm, uaddr):
    assert region(vm, 6, 0x90000, PAGE, uaddr) == 0


def test_reissuing_identical_parameters_is_a_no_op(vm, mem):
    vm.set_user_memory_region(0, 0, mem)
    assert region(vm, 0, 0, 0x10000, mem.address) == 0


def test_a_slot_can_be_added_after_vcpus_exist(vm, mem):
    vm.set_user_memory_region(0, 0, mem)
    vm.create_vcpu(0)
    assert region(vm, 11, 0xC0000, PAGE, mem.address) == 0
