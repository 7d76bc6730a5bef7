"""Reference §12: KVM_IOEVENTFD."""
import errno
import os

import pytest

import kvmlab
from kvmlab import uapi
from factkit import eventfd_count, real_mode

DATAMATCH, PIO, DEASSIGN = 1, 2, 4


def _errno(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


def _raw(kvm, vm, fd, addr, length, flags, datamatch=0):
    """KVM_IOEVENTFD with arbitrary flags, through the backend protocol."""
    arg = uapi.kvm_ioeventfd(datamatch=datamatch, addr=addr, len=length, fd=fd, flags=flags)
    try:
        kvm.backend.ioctl(vm.fd, uapi.KVM_IOEVENTFD, arg)
    except OSError as e:
        return e.errno
    return 0


def test_matching_pio_writes_signal_the_eventfd_without_exits_and_others_exit(vm, eventfd):
    e = eventfd()
    vm.ioeventfd(e, 0x500, 1, pio=True)
    g = real_mode(vm, """
        mov dx, 0x500
        mov al, 1
        out dx, al
        out dx, al
        out dx, al
        inc dx
        out dx, al
        dec dx
        out dx, ax
        in al, dx
        hlt""")
    assert g.run_until() == [("IO", "out", 0x501, 1, 1, b"\x01"), ("IO", "out", 0x500, 2, 1, b"\x01\x00"),
                             ("IO", "in", 0x500, 1, 1, None), ("HLT",)]
    assert eventfd_count(e) == 3


def test_with_datamatch_only_the_matching_value_signals(vm, eventfd):
    e = eventfd()
    vm.ioeventfd(e, 0x500, 1, pio=True, datamatch=0x42)
    g = real_mode(vm, "mov dx, 0x500\n mov al, 0x42\n out dx, al\n mov al, 0x43\n out dx, al\n"
                      " mov al, 0x42\n out dx, al\n hlt")
    assert g.run_until() == [("IO", "out", 0x500, 1, 1, b"\x43"), ("HLT",)]
    assert eventfd_count(e) == 2


def test_an_mmio_ioeventfd_matches_writes_of_its_length_only_and_reads_exit(vm, eventfd):
    e = eventfd()
    vm.ioeventfd(e, 0x90000, 4)
    g = real_mode(vm, """
        mov ax, 0x9000
        mov es, ax
        mov dword ptr es:[0], 1
        mov dword ptr es:[0], 2
        mov byte ptr es:[0], 3
        mov eax, es:[0]
        hlt""")
    assert g.run_until() == [("MMIO", "write", 0x90000, 1, b"\x03"), ("MMIO", "read", 0x90000, 4, None), ("HLT",)]
    assert eventfd_count(e) == 2


def test_an_mmio_ioeventfd_with_length_0_matches_any_length_at_its_address(vm, eventfd):
    e = eventfd()
    vm.ioeventfd(e, 0x92000, 0)
    g = real_mode(vm, """
        mov ax, 0x9200
        mov es, ax
        mov byte ptr es:[0], 1
        mov word ptr es:[0], 2
        mov dword ptr es:[0], 3
        mov byte ptr es:[1], 4
        hlt""")
    assert g.run_until() == [("MMIO", "write", 0x92001, 1, b"\x04"), ("HLT",)]
    assert eventfd_count(e) == 3


def test_a_pio_ioeventfd_with_length_0_matches_byte_word_and_dword_outs(vm, eventfd):
    e = eventfd()
    vm.ioeventfd(e, 0x600, 0, pio=True)
    g = real_mode(vm, "mov dx, 0x600\n out dx, al\n out dx, ax\n out dx, eax\n hlt")
    assert g.run_until() == [("HLT",)]
    assert eventfd_count(e) == 3


def test_an_ioeventfd_on_a_ram_address_never_fires(vm, eventfd):
    e = eventfd()
    vm.ioeventfd(e, 0x3000, 4)
    g = real_mode(vm, "mov dword ptr [0x3000], 0x12345678\n hlt")
    assert g.run_until() == [("HLT",)]
    assert eventfd_count(e) == 0
    assert g.mem.read(0x3000, 4) == (0x12345678).to_bytes(4, "little")


@pytest.mark.parametrize("length", [3, 16])
def test_a_length_other_than_0_1_2_4_8_fails_with_EINVAL(vm, eventfd, length):
    assert _errno(vm.ioeventfd, eventfd(), 0x500, length, pio=True) == errno.EINVAL


def test_a_pio_ioeventfd_of_length_8_is_accepted(vm, eventfd):
    vm.ioeventfd(eventfd(), 0x500, 8, pio=True)


def test_length_0_with_datamatch_fails_with_EINVAL(vm, eventfd):
    assert _errno(vm.ioeventfd, eventfd(), 0x500, 0, pio=True, datamatch=1) == errno.EINVAL


def test_an_unknown_flag_bit_fails_with_EINVAL(kvm, vm, eventfd):
    assert _raw(kvm, vm, eventfd(), 0x500, 1, PIO | (1 << 5)) == errno.EINVAL


def test_the_virtio_ccw_notify_flag_is_accepted_on_x86(kvm, vm, eventfd):
    assert _raw(kvm, vm, eventfd(), 0x500, 1, PIO | 8) == 0


def test_fd_minus_1_fails_with_EBADF(vm):
    assert _errno(vm.ioeventfd, -1, 0x500, 1, pio=True) == errno.EBADF


def test_a_file_that_is_not_an_eventfd_fails_with_EINVAL(vm):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert _errno(vm.ioeventfd, fd, 0x500, 1, pio=True) == errno.EINVAL
    finally:
        os.close(fd)


@pytest.mark.parametrize("first,second", [
    (dict(length=1), dict(length=1)),
    (dict(length=1), dict(length=1, datamatch=7)),
    (dict(length=1, datamatch=7), dict(length=1, datamatch=7)),
    (dict(length=0), dict(length=2)),
], ids=["same", "wildcard-vs-datamatch", "same-datamatch", "len0-vs-len2"])
def test_a_colliding_registration_fails_with_EEXIST(vm, eventfd, first, second):
    vm.ioeventfd(eventfd(), 0x500, pio=True, **first)
    assert _errno(vm.ioeventfd, eventfd(), 0x500, pio=True, **second) == errno.EEXIST


@pytest.mark.parametrize("first,second", [
    (dict(length=1), dict(length=2)),
    (dict(length=1, datamatch=7), dict(length=1, datamatch=8)),
], ids=["different-length", "different-datamatch"])
def test_registrations_that_differ_in_length_or_datamatch_coexist(vm, eventfd, first, second):
    vm.ioeventfd(eventfd(), 0x500, pio=True, **first)
    vm.ioeventfd(eventfd(), 0x500, pio=True, **second)


def test_an_address_range_that_wraps_fails_with_EINVAL(vm, eventfd):
    assert _errno(vm.ioeventfd, eventfd(), 2**64 - 2, 4) == errno.EINVAL


def test_a_pio_address_of_0x10000_is_accepted(vm, eventfd):
    vm.ioeventfd(eventfd(), 0x10000, 1, pio=True)


def test_deassigning_a_registration_that_does_not_exist_fails_with_ENOENT(vm, eventfd):
    e = eventfd()
    assert _errno(vm.ioeventfd, e, 0x500, 1, pio=True, deassign=True) == errno.ENOENT
    vm.ioeventfd(e, 0x500, 1, pio=True, datamatch=7)
    assert _errno(vm.ioeventfd, e, 0x500, 1, pio=True, datamatch=8, deassign=True) == errno.ENOENT
    assert _errno(vm.ioeventfd, e, 0x500, 1, pio=True, datamatch=7, deassign=True) == 0
