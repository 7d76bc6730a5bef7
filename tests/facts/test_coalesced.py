"""Reference §11: coalesced MMIO / PIO zones and the ring on page 2 of the vCPU mmap."""
import errno

import pytest

import kvmlab
from factkit import describe, real_mode

RING_MAX = 170


def _errno(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


WRITES = """
    mov ax, 0x9000
    mov es, ax
    mov byte ptr es:[0x000], 0x11
    mov word ptr es:[0x010], 0x2233
    mov dword ptr es:[0x020], 0x44556677
    mov dword ptr es:[0xffc], 0x8899aabb
    mov byte ptr es:[0xfff], 0xcc
    hlt"""


def test_writes_inside_a_zone_go_to_the_ring_without_exits(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, WRITES)
    ring = g.vcpu.coalesced_ring
    assert g.run_until() == [("HLT",)]
    assert (ring.first, ring.last) == (0, 5)
    got = [(e.phys_addr, e.len, e.pio, e.data) for e in ring.entries]
    assert got == [(0x90000, 1, 0, bytes.fromhex("1100000000000000")),
                   (0x90010, 2, 0, bytes.fromhex("3322000000000000")),
                   (0x90020, 4, 0, bytes.fromhex("7766554400000000")),
                   (0x90FFC, 4, 0, bytes.fromhex("bbaa998800000000")),
                   (0x90FFF, 1, 0, bytes.fromhex("cc00000000000000"))]


def test_the_kernel_advances_last_and_never_first(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, WRITES)
    g.run_until()
    ring = g.vcpu.coalesced_ring
    assert ring.first == 0
    assert len(ring.drain()) == 5
    assert (ring.first, ring.last) == (5, 5)


def test_reads_inside_a_zone_exit_as_ordinary_mmio(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, "mov ax, 0x9000\n mov es, ax\n mov eax, es:[0]\n hlt")
    assert g.run_until() == [("MMIO", "read", 0x90000, 4, None), ("HLT",)]


def test_a_write_crossing_the_zone_end_is_coalesced_inside_and_exits_outside(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, "mov ax, 0x9000\n mov es, ax\n mov dword ptr es:[0xffe], 0x01020304\n hlt")
    assert g.run_until() == [("MMIO", "write", 0x91000, 2, b"\x02\x01"), ("HLT",)]
    assert [(e.phys_addr, e.len, e.data[:2]) for e in g.vcpu.coalesced_ring.entries] == [(0x90FFE, 2, b"\x04\x03")]


LOOP = """
    mov ax, 0x9000
    mov es, ax
    xor di, di
    xor eax, eax
    mov cx, {n}
1:  mov es:[di], eax
    add di, 4
    inc eax
    loop 1b
    hlt"""


def test_a_full_ring_holds_169_entries_and_further_writes_exit_as_mmio_without_loss(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, LOOP.format(n=200))
    got = g.run_until(max_exits=100)
    ring = g.vcpu.coalesced_ring
    assert (ring.first, ring.last) == (0, 169)
    assert [e.value for e in ring.entries] == list(range(169))
    assert got == [("MMIO", "write", 0x90000 + 4 * i, 4, i.to_bytes(4, "little")) for i in range(169, 200)] + [("HLT",)]


def test_after_the_vmm_drains_a_full_ring_coalescing_resumes_and_wraps(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, LOOP.format(n=400))
    seen = []
    exits = g.run_until(max_exits=100, on_exit=lambda ex: seen.extend(e.value for e in g.vcpu.coalesced_ring.drain()))
    mmio = [int.from_bytes(e[4], "little") for e in exits if e[0] == "MMIO"]
    assert mmio == [169, 339]
    assert sorted(seen + mmio) == list(range(400))
    assert seen == [v for v in range(400) if v not in (169, 339)]


def test_a_coalesced_pio_zone_records_out_with_pio_1(vm):
    vm.register_coalesced_mmio(0x3F8, 8, pio=True)
    g = real_mode(vm, "mov dx, 0x3f8\n mov al, 0x41\n out dx, al\n mov ax, 0x4243\n out dx, ax\n hlt")
    assert g.run_until() == [("HLT",)]
    assert [(e.phys_addr, e.len, e.pio, e.data[:e.len]) for e in g.vcpu.coalesced_ring.entries] == \
        [(0x3F8, 1, 1, b"\x41"), (0x3F8, 2, 1, b"\x43\x42")]


def test_the_ring_is_one_per_vm_and_appears_in_every_vcpu_mapping(vm):
    vm.register_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, WRITES)
    other = vm.create_vcpu(1)
    g.run_until()
    assert other.coalesced_ring.last == 5
    assert other.coalesced_ring.entries == g.vcpu.coalesced_ring.entries


def test_a_zone_over_ram_is_accepted_and_never_used(vm):
    vm.register_coalesced_mmio(0x3000, 0x1000)
    g = real_mode(vm, "mov byte ptr [0x3000], 7\n hlt")
    assert g.run_until() == [("HLT",)]
    assert g.vcpu.coalesced_ring.last == 0
    assert g.mem.read(0x3000, 1) == b"\x07"


@pytest.mark.parametrize("pio", [2, 5])
def test_a_zone_with_pio_other_than_0_or_1_fails_with_EINVAL(vm, pio):
    assert _errno(vm.register_coalesced_mmio, 0x90000, 0x1000, pio=pio) == errno.EINVAL


def test_size_0_and_overlapping_or_identical_zones_are_accepted(vm):
    vm.register_coalesced_mmio(0x90000, 0)
    vm.register_coalesced_mmio(0x90000, 0x1000)
    vm.register_coalesced_mmio(0x90000, 0x1000)
    vm.register_coalesced_mmio(0x90800, 0x1000)


UNREG_GUEST = "mov ax, 0x9000\n mov es, ax\n mov byte ptr es:[0], 1\n mov byte ptr es:[0x100], 2\n hlt"
BOTH_EXIT = [("MMIO", "write", 0x90000, 1, b"\x01"), ("MMIO", "write", 0x90100, 1, b"\x02"), ("HLT",)]


def test_unregister_with_a_zones_exact_range_removes_it_and_succeeds_when_nothing_matches(vm):
    vm.register_coalesced_mmio(0x90000, 0x100)
    vm.register_coalesced_mmio(0x90100, 0x100)
    vm.unregister_coalesced_mmio(0x90000, 0x100)
    vm.unregister_coalesced_mmio(0x90100, 0x100)
    vm.unregister_coalesced_mmio(0x90100, 0x100)       # nothing left: still 0
    g = real_mode(vm, UNREG_GUEST)
    assert g.run_until() == BOTH_EXIT


def test_unregister_removes_the_zones_that_contain_the_range(vm):
    # reference §11.1 says: "removes every zone that lies completely inside the range (a
    # range covering 2 zones removed both)"; measured here: the zone that CONTAINS the
    # range is removed (upstream coalesced_mmio_in_range(dev, zone->addr, zone->size)), ...
    vm.register_coalesced_mmio(0x90000, 0x1000)
    vm.unregister_coalesced_mmio(0x90400, 0x10)
    g = real_mode(vm, UNREG_GUEST)
    assert g.run_until() == BOTH_EXIT


def test_unregister_of_a_range_covering_two_smaller_zones_removes_neither(vm):
    # ... and a range that covers two smaller zones removes neither (the ioctl still returns 0).
    vm.register_coalesced_mmio(0x90000, 0x100)
    vm.register_coalesced_mmio(0x90100, 0x100)
    vm.unregister_coalesced_mmio(0x90000, 0x1000)
    g = real_mode(vm, UNREG_GUEST)
    assert g.run_until() == [("HLT",)]
    assert [e.phys_addr for e in g.vcpu.coalesced_ring.entries] == [0x90000, 0x90100]


def test_registering_zones_fails_with_ENOSPC_when_the_bus_is_full(vm):
    n = 0
    while n < 1100:
        err = _errno(vm.register_coalesced_mmio, 0x100000 + 0x10 * n, 0x10)
        if err:
            break
        n += 1
    assert err == errno.ENOSPC
    assert 990 <= n <= 1000          # NR_IOBUS_DEVS = 1000, less what the VM already put on the bus
