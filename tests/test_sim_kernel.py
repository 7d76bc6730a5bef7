"""The simulated kernel through the ioctl boundary: request numbers + uapi structs in,
return values / errno / bytes out (reference §1-§7, §11, §12, §13.4, §15)."""
import ctypes
import errno
import os
import struct

import numpy as np
import pytest

from kvmlab import hostmem
from kvmlab import uapi as U
from kvmlab.sim import SimBackend
from kvmlab.sim.kvm_host import vm_list


class Host:
    """A tiny VMM talking to SimBackend directly."""

    def __init__(self, vendor="intel"):
        self.b = SimBackend(vendor=vendor)
        self.sys = self.b.open_dev()

    def io(self, fd, req, arg=0):
        return self.b.ioctl(fd, req, arg)

    def errno_of(self, fd, req, arg=0):
        try:
            self.b.ioctl(fd, req, arg)
        except OSError as e:
            return e.errno
        return 0

    def vm(self):
        return self.io(self.sys, U.KVM_CREATE_VM, 0)


def region(slot, gpa, size, uaddr, flags=0):
    return U.kvm_userspace_memory_region(slot=slot, flags=flags, guest_phys_addr=gpa,
                                         memory_size=size, userspace_addr=uaddr)


@pytest.fixture
def host():
    return Host()


@pytest.fixture
def mem():
    a = np.zeros(0x20000 + 4096, np.uint8)
    off = (-a.ctypes.data) % 4096
    view = a[off:off + 0x20000]
    addr = hostmem.register(view)
    yield addr, view
    hostmem.unregister(addr)


# -- system fd ---------------------------------------------------------------------------
def test_api_version_is_12_and_mmap_size_is_three_pages(host):
    assert host.io(host.sys, U.KVM_GET_API_VERSION) == 12
    assert host.io(host.sys, U.KVM_GET_VCPU_MMAP_SIZE) == 12288


def test_create_vm_accepts_only_type_0(host):
    assert host.errno_of(host.sys, U.KVM_CREATE_VM, 1) == errno.EINVAL
    assert host.errno_of(host.sys, U.KVM_CREATE_VM, 0xFF) == errno.EINVAL
    assert host.vm() > 0


def test_wrong_fd_and_unknown_ioctls_fail_like_the_kernel(host):
    vm = host.vm()
    vcpu = host.io(vm, U.KVM_CREATE_VCPU, 0)
    assert host.errno_of(vm, U.KVM_RUN) == errno.ENOTTY
    assert host.errno_of(vm, 0xAEFF) == errno.ENOTTY
    assert host.errno_of(vm, U.KVM_CREATE_VM) == errno.ENOTTY
    assert host.errno_of(host.sys, U.KVM_CREATE_VCPU) == errno.EINVAL
    assert host.errno_of(vcpu, U.KVM_GET_API_VERSION) == errno.EINVAL
    assert host.errno_of(12345, U.KVM_GET_API_VERSION) == errno.EBADF


def test_mmap_of_a_vm_fd_or_the_system_fd_is_ENODEV(host):
    vm = host.vm()
    for fd in (vm, host.sys):
        with pytest.raises(OSError) as e:
            host.b.mmap(fd, 4096, 0)
        assert e.value.errno == errno.ENODEV


def test_capabilities_say_what_the_sim_supports(host):
    vm = host.vm()
    ce = lambda fd, cap: host.io(fd, U.KVM_CHECK_EXTENSION, cap)
    assert ce(host.sys, U.KVM_CAP_USER_MEMORY) == 1
    assert ce(host.sys, U.KVM_CAP_NR_MEMSLOTS) == 32764
    assert ce(host.sys, U.KVM_CAP_MAX_VCPUS) == 1024
    assert ce(host.sys, U.KVM_CAP_MAX_VCPU_ID) == 4096
    assert ce(host.sys, U.KVM_CAP_COALESCED_MMIO) == 2
    assert ce(vm, U.KVM_CAP_IOEVENTFD) == 1
    assert ce(vm, U.KVM_CAP_SYNC_REGS) == 7
    assert ce(host.sys, 9999) == 0
    assert ce(host.sys, 118) == 0          # no MULTI_ADDRESS_SPACE


def test_fds_are_real_numbers_released_on_close(host):
    vm = host.vm()
    os.fstat(vm)                           # a real open fd number
    host.b.close(vm)
    with pytest.raises(OSError):
        os.fstat(vm)
    assert host.errno_of(vm, U.KVM_CHECK_EXTENSION, 0) == errno.EBADF


# -- memslots §3.2 -------------------------------------------------------------------------
def test_memslot_errno_matrix_of_reference_3_2(host, mem):
    A, _ = mem
    vm = host.vm()
    e = lambda *a, **k: host.errno_of(vm, U.KVM_SET_USER_MEMORY_REGION, region(*a, **k))
    assert e(0, 0, 0x10000, A) == 0
    assert e(1, 0x20001, 0x1000, A) == errno.EINVAL
    assert e(1, 0x20800, 0x1000, A) == errno.EINVAL
    assert e(1, 0x20000, 0x1001, A) == errno.EINVAL
    assert e(1, 0x20000, 0x800, A) == errno.EINVAL
    assert e(1, 0x20000, 0x1000, A + 1) == errno.EINVAL
    assert e(1, 0x20000, 0x1000, A + 0x800) == errno.EINVAL
    assert e(1, 0x8000, 0x10000, A) == errno.EEXIST
    assert e(1, 0xF000, 0x1000, A) == errno.EEXIST
    assert e(1, 0x10000, 0x1000, A) == 0                   # adjacent
    assert e(2, 0x40000, 0x1000, A) == 0                   # aliasing the same host memory
    assert e(32763, 0x100000, 0x1000, A) == 0
    assert e(32764, 0x200000, 0x1000, A) == errno.EINVAL
    assert e(0xFFFF, 0x200000, 0x1000, A) == errno.EINVAL
    assert e(0x10000, 0x200000, 0x1000, A) == errno.EINVAL
    assert e(0x10001, 0x200000, 0x1000, A) == errno.EINVAL
    assert e(2, 0x40000, 0, A) == 0                        # delete
    assert e(2, 0x40000, 0, A) == errno.EINVAL             # already deleted
    assert e(77, 0, 0, 0) == errno.EINVAL
    assert e(32764, 0, 0, 0) == errno.EINVAL
    assert e(1, 0x10000, 0x2000, A) == errno.EINVAL        # resize
    assert e(0, 0, 0x8000, A) == errno.EINVAL              # shrink
    assert e(1, 0x50000, 0x1000, A) == 0                   # move
    assert e(1, 0x50000, 0x1000, A + 0x1000) == errno.EINVAL
    assert e(1, 0x50000, 0x1000, A, 1) == 0                # LOG_DIRTY on
    assert e(1, 0x50000, 0x1000, A, 0) == 0                # and off
    assert e(1, 0x50000, 0x1000, A, 2) == errno.EINVAL     # READONLY toggle
    assert e(3, 0x60000, 0x1000, A, 2) == 0
    assert e(4, 0x70000, 0x1000, A, 3) == 0
    for bad in (4, 8, 1 << 16):
        assert e(5, 0x80000, 0x1000, A, bad) == errno.EINVAL
    assert e(5, 0xFFFFFFFFFFFFF000, 0x2000, A) == errno.EINVAL
    assert e(5, 1 << 52, 0x1000, A) == errno.EINVAL
    assert e(5, (1 << 52) - 0x1000, 0x1000, A) == 0        # ends exactly at 2^52
    assert e(5, 0, 0, 0) == 0
    assert e(5, 0x80000, 0x1000, 0xFFFF888000000000) == errno.EINVAL
    assert e(6, 0x90000, 0x1000, 0x10000000000) == 0       # unmapped host range is fine
    assert e(7, 1 << 44, 1 << 43, 0x100000000000) == errno.EINVAL          # 2^31 pages
    assert e(7, 1 << 44, (1 << 43) - 0x1000, 0x100000000000) == 0
    assert e(8, 0xA0000, 0x1000, 0) == 0                   # uaddr 0 accepted
    assert e(9, 0xB0000, 0, A) == errno.EINVAL
    assert e(10, 0, 0x1000, A) == errno.EEXIST
    assert e(3, 0x60000, 0x1000, A, 2) == 0                # identical re-issue: no-op
    assert e(3, 0xDEAD000, 0, A + 0x2000, 2) == 0          # delete ignores gpa/uaddr/flags


def test_memslot_errors_carry_a_sentence_that_says_what_to_do(host, mem):
    A, _ = mem
    vm = host.vm()
    with pytest.raises(OSError) as e:
        host.io(vm, U.KVM_SET_USER_MEMORY_REGION, region(0, 0x1001, 0x1000, A))
    assert "aligned" in str(e.value)


def test_slots_can_be_added_after_vcpus_exist(host, mem):
    A, _ = mem
    vm = host.vm()
    host.io(vm, U.KVM_CREATE_VCPU, 0)
    assert host.errno_of(vm, U.KVM_SET_USER_MEMORY_REGION, region(11, 0xC0000, 0x1000, A)) == 0


# -- dirty log §3.4 --------------------------------------------------------------------------
def test_dirty_log_errors_follow_reference_3_4(host, mem):
    A, _ = mem
    vm = host.vm()
    bm = np.zeros(8, np.uint8)
    bmaddr = hostmem.register(bm)
    try:
        host.io(vm, U.KVM_SET_USER_MEMORY_REGION, region(3, 0x20000, 0x1000, A, 1))
        host.io(vm, U.KVM_SET_USER_MEMORY_REGION, region(4, 0x40000, 0x4000, A))
        dl = lambda slot, p=bmaddr: host.errno_of(vm, U.KVM_GET_DIRTY_LOG,
                                                  struct.pack("<IIQ", slot, 0, p))
        assert dl(4) == errno.ENOENT
        assert dl(99) == errno.ENOENT
        assert dl(40000) == errno.EINVAL
        assert dl(3) == 0
        assert dl(3, 0) == errno.EFAULT
        assert dl(3, 0x1000) == errno.EFAULT
    finally:
        hostmem.unregister(bmaddr)


def test_dirty_bitmap_is_written_in_64_bit_words_and_cleared_by_reading(host, mem):
    A, _ = mem
    vm = host.vm()
    host.io(vm, U.KVM_SET_USER_MEMORY_REGION, region(0, 0, 65 * 4096, A, 1))
    kvm = host.b._files[vm].kvm
    kvm.memslots.id_hash[0].dirty_bitmap[1] = 1         # the core marks page 64 dirty
    buf = np.full(24, 0xEE, np.uint8)
    p = hostmem.register(buf)
    try:
        host.io(vm, U.KVM_GET_DIRTY_LOG, struct.pack("<IIQ", 0, 0, p))
        assert list(buf[:16]) == [0] * 8 + [1] + [0] * 7      # 16 bytes for 65 pages
        assert list(buf[16:]) == [0xEE] * 8                    # nothing beyond
        host.io(vm, U.KVM_GET_DIRTY_LOG, struct.pack("<IIQ", 0, 0, p))
        assert not buf[:16].any()
    finally:
        hostmem.unregister(p)


# -- vCPUs §4.1 --------------------------------------------------------------------------------
def test_vcpu_id_limits_and_EEXIST(host):
    vm = host.vm()
    assert host.io(vm, U.KVM_CREATE_VCPU, 0) > 0
    assert host.errno_of(vm, U.KVM_CREATE_VCPU, 0) == errno.EEXIST
    assert host.io(vm, U.KVM_CREATE_VCPU, 4095) > 0
    for bad in (4096, 0xFFFFFFFF, 1 << 32):
        assert host.errno_of(vm, U.KVM_CREATE_VCPU, bad) == errno.EINVAL


@pytest.mark.slow
def test_the_1025th_vcpu_is_EINVAL(host):
    vm = host.vm()
    kvm = host.b._files[vm].kvm
    kvm.max_vcpus = 4                       # same code path, small number
    for i in range(4):
        host.io(vm, U.KVM_CREATE_VCPU, i)
    assert host.errno_of(vm, U.KVM_CREATE_VCPU, 4) == errno.EINVAL


def test_ordering_rules_after_vcpu_creation(host):
    vm = host.vm()
    host.io(vm, U.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(0xFEFFC000))
    host.io(vm, U.KVM_CREATE_VCPU, 0)
    assert host.errno_of(vm, U.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(0xFEFFC000)) == errno.EINVAL
    assert host.errno_of(vm, U.KVM_SET_BOOT_CPU_ID, 0) == errno.EBUSY
    assert host.errno_of(vm, U.KVM_CREATE_IRQCHIP) == errno.EINVAL
    assert host.io(vm, U.KVM_SET_TSS_ADDR, 0xFFFBD000) == 0
    assert host.io(vm, U.KVM_SET_TSS_ADDR, 0xFFFBD000) == 0
    assert host.errno_of(vm, U.KVM_SET_TSS_ADDR, 0x100000000) == errno.EINVAL
    assert host.errno_of(vm, U.KVM_SET_TSS_ADDR, 0xFFFFF000) == errno.EINVAL


def test_mp_state_is_runnable_without_irqchip(host):
    vm = host.vm()
    v = host.io(vm, U.KVM_CREATE_VCPU, 1)
    st = U.kvm_mp_state(mp_state=99)
    host.io(v, U.KVM_GET_MP_STATE, st)
    assert st.mp_state == 0


def test_vcpu_mmap_page_2_is_the_same_ring_in_every_vcpu(host):
    vm = host.vm()
    a = host.b.mmap(host.io(vm, U.KVM_CREATE_VCPU, 0), 12288, 0)
    b = host.b.mmap(host.io(vm, U.KVM_CREATE_VCPU, 1), 12288, 0)
    a[0x2000 + 20] = 0x5A
    assert b[0x2000 + 20] == 0x5A
    a[0] = 1
    assert b[0] == 0                        # kvm_run pages are per vCPU
    run = U.kvm_run.from_buffer(a)          # the kvm_run layout sits on page 0
    assert run.request_interrupt_window == 1


def test_vm_lives_while_any_fd_refers_to_it(host):
    vm = host.vm()
    kvm = host.b._files[vm].kvm
    v = host.io(vm, U.KVM_CREATE_VCPU, 0)
    assert kvm.users_count == 2 and kvm in vm_list
    host.b.close(vm)
    assert kvm.users_count == 1 and kvm in vm_list
    host.io(v, U.KVM_GET_MP_STATE, U.kvm_mp_state())   # the vCPU still works
    host.b.close(v)
    assert kvm.users_count == 0 and kvm not in vm_list


# -- CPUID §7 / MSR lists §6 -------------------------------------------------------------------
def test_supported_cpuid_sizing_follows_reference_7(host):
    small = U.kvm_cpuid2_with(1)
    small.nent = 1
    assert host.errno_of(host.sys, U.KVM_GET_SUPPORTED_CPUID, small) == errno.E2BIG
    assert small.nent == 1
    big = U.kvm_cpuid2_with(256)
    big.nent = 256
    host.io(host.sys, U.KVM_GET_SUPPORTED_CPUID, big)
    n = big.nent
    assert 1 < n < 256
    leaf0 = big.entries[0]
    vendor = struct.pack("<III", leaf0.ebx, leaf0.edx, leaf0.ecx)
    assert vendor == b"GenuineIntel"
    assert Host("amd").b.vendor == "amd"


def test_amd_flavour_reports_AuthenticAMD():
    h = Host("amd")
    big = U.kvm_cpuid2_with(64)
    big.nent = 64
    h.io(h.sys, U.KVM_GET_SUPPORTED_CPUID, big)
    e = big.entries[0]
    assert struct.pack("<III", e.ebx, e.edx, e.ecx) == b"AuthenticAMD"


def test_cpuid2_round_trip_and_E2BIG(host):
    vm = host.vm()
    v = host.io(vm, U.KVM_CREATE_VCPU, 0)
    g = U.kvm_cpuid2_with(4)
    g.nent = 4
    host.io(v, U.KVM_GET_CPUID2, g)
    assert g.nent == 0                                    # fresh vCPU: empty table
    s = U.kvm_cpuid2_with(2)
    s.nent = 2
    s.entries[0].function, s.entries[0].eax = 0, 1
    s.entries[1].function, s.entries[1].eax = 1, 0x663
    host.io(v, U.KVM_SET_CPUID2, s)
    g1 = U.kvm_cpuid2_with(1)
    g1.nent = 1
    assert host.errno_of(v, U.KVM_GET_CPUID2, g1) == errno.E2BIG and g1.nent == 1
    g.nent = 4
    host.io(v, U.KVM_GET_CPUID2, g)
    assert g.nent == 2 and g.entries[1].eax == 0x663


def test_msr_index_list_E2BIG_writes_the_needed_count(host):
    small = U.kvm_msr_list_with(1)
    small.nmsrs = 1
    assert host.errno_of(host.sys, U.KVM_GET_MSR_INDEX_LIST, small) == errno.E2BIG
    n = small.nmsrs
    assert n > 1
    full = U.kvm_msr_list_with(n)
    full.nmsrs = n
    host.io(host.sys, U.KVM_GET_MSR_INDEX_LIST, full)
    idx = list(full.indices[:n])
    assert 0x10 in idx and 0x277 in idx and 0xC0000080 not in idx


# -- stats §15 ----------------------------------------------------------------------------------
def _read_stats(b, fd):
    flags, name_size, num_desc, id_off, desc_off, data_off = struct.unpack(
        "<6I", b.pread(fd, 24, 0))
    ident = b.pread(fd, name_size, id_off).split(b"\0")[0].decode()
    rec = 16 + name_size
    raw = b.pread(fd, rec * num_desc, desc_off)
    out = {}
    for i in range(num_desc):
        fl, exp, size, off, bucket = struct.unpack_from("<IhHII", raw, i * rec)
        name = raw[i * rec + 16:i * rec + rec].split(b"\0")[0].decode()
        vals = struct.unpack(f"<{size}Q", b.pread(fd, 8 * size, data_off + off))
        out[name] = (fl, exp, size, off, vals)
    return (name_size, num_desc, desc_off, data_off, ident), out


def test_vm_stats_fd_has_the_kernels_binary_layout(host):
    vm = host.vm()
    sfd = host.io(vm, U.KVM_GET_STATS_FD)
    hdr, st = _read_stats(host.b, sfd)
    assert hdr == (48, 15, 72, 1032, f"kvm-{os.getpid()}")
    assert st["max_mmu_rmap_size"][3] == 112 and st["max_mmu_page_hash_collisions"][3] == 104
    assert list(st)[13] == "max_mmu_rmap_size"


def test_vcpu_stats_fd_has_the_kernels_names_and_offsets(host):
    vm = host.vm()
    v = host.io(vm, U.KVM_CREATE_VCPU, 3)
    sfd = host.io(v, U.KVM_GET_STATS_FD)
    hdr, st = _read_stats(host.b, sfd)
    assert hdr == (48, 45, 72, 2952, f"kvm-{os.getpid()}/vcpu-3")
    assert st["exits"][3] == 904 and st["halt_exits"][3] == 960
    assert st["insn_emulation"][3] == 1000 and st["notify_window_exits"][3] == 1096
    assert st["halt_wait_ns"][:2] == (0x20, -9)            # seconds, 10^-9
    assert st["halt_wait_hist"][0] == 0x24 and st["halt_wait_hist"][2] == 32
    for name in ("io_exits", "mmio_exits", "signal_exits", "irq_window_exits", "irq_exits",
                 "irq_injections", "nmi_injections", "pf_taken", "pf_guest", "tlb_flush",
                 "invlpg"):
        assert name in st


def test_stats_fd_keeps_the_vm_alive_until_closed(host):
    vm = host.vm()
    kvm = host.b._files[vm].kvm
    sfd = host.io(vm, U.KVM_GET_STATS_FD)
    host.b.close(vm)
    assert kvm in vm_list
    host.b.close(sfd)
    assert kvm not in vm_list


# -- coalesced zones §11.1 ----------------------------------------------------------------------
def test_coalesced_zone_registration_rules(host):
    vm = host.vm()
    z = lambda addr, size, pio=0: U.kvm_coalesced_mmio_zone(addr=addr, size=size, pio=pio)
    assert host.errno_of(vm, U.KVM_REGISTER_COALESCED_MMIO, z(0x1000, 8, pio=2)) == errno.EINVAL
    assert host.io(vm, U.KVM_REGISTER_COALESCED_MMIO, z(0x200000, 0)) == 0
    assert host.io(vm, U.KVM_REGISTER_COALESCED_MMIO, z(0x300000, 0x100)) == 0
    assert host.io(vm, U.KVM_REGISTER_COALESCED_MMIO, z(0x300000, 0x100)) == 0
    assert host.io(vm, U.KVM_REGISTER_COALESCED_MMIO, z(0x300080, 0x100)) == 0
    assert host.io(vm, U.KVM_UNREGISTER_COALESCED_MMIO, z(0x900000, 0x100)) == 0
    kvm = host.b._files[vm].kvm
    assert len(kvm.coalesced_zones) == 4
    n = 0
    with pytest.raises(OSError) as e:
        for i in range(2000):
            host.io(vm, U.KVM_REGISTER_COALESCED_MMIO, z(0x10000000 + i * 0x1000, 0x100))
            n += 1
    assert e.value.errno == errno.ENOSPC and n == 996        # NR_IOBUS_DEVS = 1000
    host.io(vm, U.KVM_UNREGISTER_COALESCED_MMIO, z(0x300000, 0x10))
    assert len(kvm.coalesced_zones) == 998                   # both identical zones contain it


def test_coalesced_pio_zones_go_on_the_pio_bus(host):
    vm = host.vm()
    host.io(vm, U.KVM_REGISTER_COALESCED_MMIO, U.kvm_coalesced_mmio_zone(addr=0x3F8, size=8, pio=1))
    kvm = host.b._files[vm].kvm
    assert kvm.buses[1].dev_count == 1 and kvm.buses[0].dev_count == 0


# -- ioeventfd §12.4 ----------------------------------------------------------------------------
def test_ioeventfd_errno_matrix_of_reference_12_4(host):
    vm = host.vm()
    efd = os.eventfd(0)
    efd2 = os.eventfd(0)
    null = os.open(os.devnull, os.O_RDONLY)
    PIO, DM, DEASSIGN = 2, 1, 4

    def e(addr, length, fd=efd, flags=PIO, dm=0):
        return host.errno_of(vm, U.KVM_IOEVENTFD, U.kvm_ioeventfd(
            datamatch=dm, addr=addr, len=length, fd=fd, flags=flags))
    try:
        assert e(0x500, 3) == errno.EINVAL
        assert e(0x500, 16) == errno.EINVAL
        assert e(0x500, 8) == 0
        assert e(0x501, 0, flags=PIO | DM) == errno.EINVAL
        assert e(0x502, 1, flags=PIO | (1 << 5)) == errno.EINVAL
        assert e(0x503, 1, flags=PIO | 8) == 0                       # VIRTIO_CCW_NOTIFY
        assert e(0x504, 1, fd=-1) == errno.EBADF
        assert e(0x504, 1, fd=null) == errno.EINVAL
        assert e(0x700, 1) == 0
        assert e(0x700, 1) == errno.EEXIST
        assert e(0x700, 1, fd=efd2) == errno.EEXIST
        assert e(0x700, 2) == 0
        assert e(0x700, 1, flags=PIO | DM, dm=5) == errno.EEXIST
        assert e(0xFFFFFFFFFFFFFFFF, 4, flags=0) == errno.EINVAL
        assert e(0x700, 1, flags=PIO | DEASSIGN) == 0
        assert e(0x700, 1, flags=PIO | DEASSIGN) == errno.ENOENT
        assert e(0x700, 2, flags=PIO | DEASSIGN | DM, dm=5) == errno.ENOENT
        assert e(0x10000, 1) == 0
        assert e(0x900, 1, flags=PIO | DM, dm=5) == 0
        assert e(0x900, 1, flags=PIO | DM, dm=6) == 0                 # different datamatch
        assert e(0x900, 0) == errno.EEXIST                            # len 0 collides
    finally:
        for fd in (efd, efd2, null):
            os.close(fd)


def test_ioeventfd_keeps_its_own_reference_to_the_eventfd(host):
    vm = host.vm()
    efd = os.eventfd(0)
    host.io(vm, U.KVM_IOEVENTFD, U.kvm_ioeventfd(addr=0x600, len=1, fd=efd, flags=2))
    kvm = host.b._files[vm].kvm
    p = kvm.ioeventfds[0]
    os.close(efd)
    p.write(None, 0x600, 1, b"\x01")            # the kernel still signals its eventfd
    assert os.eventfd_read(p.eventfd.fd) == 1


# -- irqfd §13.4 (no irqchip) ---------------------------------------------------------------------
def test_irqfd_without_irqchip_is_EINVAL(host):
    vm = host.vm()
    efd = os.eventfd(0)
    try:
        assert host.errno_of(vm, U.KVM_IRQFD, U.kvm_irqfd(fd=efd, gsi=4)) == errno.EINVAL
        assert host.errno_of(vm, U.KVM_IRQFD, U.kvm_irqfd(fd=efd, gsi=4, flags=4)) == errno.EINVAL
        assert host.errno_of(vm, U.KVM_IRQFD, U.kvm_irqfd(fd=efd, gsi=4, flags=1)) == 0
    finally:
        os.close(efd)


def test_irq_line_without_irqchip_is_ENXIO(host):
    vm = host.vm()
    assert host.errno_of(vm, U.KVM_IRQ_LINE, U.kvm_irq_level(irq=4, level=1)) == errno.ENXIO
