"""Unit tests of the API layer that need no KVM at all."""
import errno
import struct

import numpy as np
import pytest

import kvmlab
from kvmlab import hostmem
from kvmlab.vcpu import CoalescedRing
from kvmlab.vm import DirtyLog, _memslot_einval, MemorySlot


def ring_page(first, last, entries):
    buf = bytearray(3 * 4096)
    struct.pack_into("<II", buf, 8192, first, last)
    for i, (addr, ln, pio, data) in entries.items():
        struct.pack_into("<QII8s", buf, 8192 + 8 + 24 * i, addr, ln, pio, data)
    return buf


def test_draining_the_ring_returns_entries_oldest_first_and_advances_first_to_last():
    buf = ring_page(168, 1, {168: (0x100000, 1, 0, b"\x11"), 169: (0x100010, 2, 0, b"\x33\x22"),
                             0: (0x3F8, 1, 1, b"A")})
    ring = CoalescedRing(memoryview(buf))
    got = ring.drain()
    assert [(w.phys_addr, w.len, w.pio, w.value) for w in got] == [
        (0x100000, 1, 0, 0x11), (0x100010, 2, 0, 0x2233), (0x3F8, 1, 1, 0x41)]
    assert (ring.first, ring.last, len(ring), ring.drain()) == (1, 1, 0, [])


def test_draining_the_ring_as_an_array_gives_the_same_entries_across_the_wrap():
    entries = {168: (0x100000, 1, 0, b"\x11"), 169: (0x100010, 2, 0, b"\x33\x22"), 0: (0x3F8, 1, 1, b"A")}
    ring = CoalescedRing(memoryview(ring_page(168, 1, entries)))
    arr = ring.drain_array()
    assert [(int(a), int(n), int(p), bytes(d[:n])) for a, n, p, d in arr] == [
        (0x100000, 1, 0, b"\x11"), (0x100010, 2, 0, b"\x33\x22"), (0x3F8, 1, 1, b"A")]
    assert (ring.first, len(ring.drain_array())) == (1, 0)


def test_a_ring_whose_last_is_out_of_range_has_no_entries():
    ring = CoalescedRing(memoryview(ring_page(0, 170, {})))
    assert ring.entries == [] and ring.drain() == []


def test_a_dirty_log_lists_pages_lsb_first():
    words = np.zeros(2, dtype=np.uint64)
    words[0] = (1 << 3) | (1 << 4) | (1 << 7)
    words[1] = 1 << (100 - 64)
    assert DirtyLog(0, 128, words).pages == [3, 4, 7, 100]


def test_kvm_error_carries_errno_ioctl_and_what_to_do():
    e = kvmlab.KvmError(errno.ENOENT, "KVM_GET_DIRTY_LOG")
    assert isinstance(e, OSError) and e.errno == errno.ENOENT and e.ioctl == "KVM_GET_DIRTY_LOG"
    assert str(e).startswith("KVM_GET_DIRTY_LOG failed with ENOENT") and "LOG_DIRTY_PAGES" in str(e)


@pytest.mark.parametrize("args,fragment", [
    ((0x10000, 0, 0x1000, 0, 0, None), "address space 1"),
    ((32764, 0, 0x1000, 0, 0, None), "KVM_CAP_NR_MEMSLOTS is 32764"),
    ((0, 0x800, 0x1000, 0, 0, None), "multiples of 4096"),
    ((0, 0, 0x1000, 0, 4, None), "unknown bits"),
    ((3, 0, 0, 0, 0, None), "does not exist"),
    ((0, 0, 0x2000, 0, 0, MemorySlot(0, 0, 0x1000, 0, 0)), "cannot be resized"),
    ((0, 0, 0x1000, 0, 2, MemorySlot(0, 0, 0x1000, 0, 0)), "READONLY cannot be added"),
])
def test_memslot_einval_names_the_broken_rule(args, fragment):
    assert fragment in _memslot_einval(*args)


def test_guest_memory_is_page_aligned_registered_and_bounds_checked():
    mem = kvmlab.GuestMemory(0x3000)
    assert mem.address % 4096 == 0
    assert hostmem.lookup(mem.address + 0x1000, 0x2000) is not None
    assert hostmem.lookup(mem.address + 0x1000, 0x2001) is None
    hostmem.lookup(mem.address, 4)[:] = [1, 2, 3, 4]
    assert mem.read(0, 4) == b"\x01\x02\x03\x04"
    with pytest.raises(IndexError, match="outside this 0x3000-byte GuestMemory"):
        mem.write(0x2FFF, b"ab")
    mem.close()
    assert hostmem.lookup(mem.address, 1) is None


@pytest.mark.parametrize("size", [0, 100, 4097, -4096])
def test_guest_memory_sizes_must_be_whole_pages(size):
    with pytest.raises(ValueError, match="multiple of 4096"):
        kvmlab.GuestMemory(size)


def test_an_unknown_backend_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'sim', 'hw', 'auto'"):
        kvmlab.open("qemu")


def test_the_hw_backend_says_why_it_cannot_open_a_missing_device():
    from kvmlab.hw import unusable_reason
    assert "does not exist" in unusable_reason("/nonexistent/kvm")
