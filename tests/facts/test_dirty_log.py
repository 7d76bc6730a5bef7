"""Reference §3.4: KVM_GET_DIRTY_LOG."""
import errno

import numpy as np
import pytest

import kvmlab
from kvmlab import hostmem, uapi
from factkit import real_mode

DIRTY = kvmlab.KVM_MEM_LOG_DIRTY_PAGES


def _errno(fn, *a):
    try:
        fn(*a)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


def test_a_slot_without_log_dirty_pages_fails_with_ENOENT(vm):
    vm.set_user_memory_region(0, 0, kvmlab.GuestMemory(0x10000))
    assert _errno(vm.get_dirty_log, 0) == errno.ENOENT


def test_a_slot_that_does_not_exist_fails_with_ENOENT(vm):
    assert _errno(vm.get_dirty_log, 5) == errno.ENOENT


def test_a_slot_id_at_or_above_nr_memslots_fails_with_EINVAL(vm):
    assert _errno(vm.get_dirty_log, 32764) == errno.EINVAL


def test_a_null_bitmap_pointer_fails_with_EFAULT(kvm, vm):
    vm.set_user_memory_region(0, 0, kvmlab.GuestMemory(0x10000), flags=DIRTY)
    with pytest.raises(OSError) as e:
        kvm.backend.ioctl(vm.fd, uapi.KVM_GET_DIRTY_LOG, uapi.kvm_dirty_log(slot=0, dirty_bitmap=0))
    assert e.value.errno == errno.EFAULT


@pytest.mark.parametrize("npages,written", [(1, 8), (64, 8), (65, 16)])
def test_the_kernel_writes_the_bitmap_in_64_bit_words(kvm, vm, npages, written):
    vm.set_user_memory_region(0, 0, kvmlab.GuestMemory(npages * 4096), flags=DIRTY)
    buf = np.full(32, 0xFF, dtype=np.uint8)
    addr = hostmem.register(buf)
    try:
        kvm.backend.ioctl(vm.fd, uapi.KVM_GET_DIRTY_LOG, uapi.kvm_dirty_log(slot=0, dirty_bitmap=addr))
    finally:
        hostmem.unregister(addr)
    assert bytes(buf[:written]) == bytes(written)          # a fresh slot: all clean
    assert bytes(buf[written:]) == b"\xff" * (32 - written)  # nothing written beyond ALIGN(npages, 64) / 8


DIRTY_GUEST = """
    mov byte ptr [0x3000], 1
    mov word ptr [0x4ffe], 2
    mov ax, 0x6000
    mov es, ax
    mov byte ptr es:[0x4000], 3
    push ax
    hlt"""


def _dirty_guest(vm):
    g = real_mode(vm, DIRTY_GUEST, mem_size=0x80000, rsp=0x8000)
    vm.set_user_memory_region(0, 0, g.mem, flags=DIRTY)   # toggle LOG_DIRTY on the existing slot
    return g


def test_a_new_slot_starts_with_an_empty_bitmap(vm):
    g = _dirty_guest(vm)
    assert vm.get_dirty_log(0).pages == []


def test_guest_writes_including_stack_pushes_set_one_bit_per_page(vm):
    g = _dirty_guest(vm)
    assert g.run_until() == [("HLT",)]
    # pages 3, 4 (the word at 0x4ffe), 100 (0x64000), 7 (push with sp=0x8000)
    assert vm.get_dirty_log(0).pages == [3, 4, 7, 100]


def test_reading_the_dirty_log_clears_it(vm):
    g = _dirty_guest(vm)
    g.run_until()
    assert vm.get_dirty_log(0).pages
    assert vm.get_dirty_log(0).pages == []


def test_writes_by_the_vmm_through_its_own_mapping_are_not_logged(vm):
    g = _dirty_guest(vm)
    g.mem[50 * 4096] = 0x55
    assert vm.get_dirty_log(0).pages == []


def test_bit_0_is_the_first_page_of_the_slot_lsb_first(vm):
    g = _dirty_guest(vm)
    g.run_until()
    log = vm.get_dirty_log(0)
    raw = log.bitmap.view(np.uint8)
    assert raw[0] == (1 << 3) | (1 << 4) | (1 << 7)
    assert raw[100 // 8] == 1 << (100 % 8)
