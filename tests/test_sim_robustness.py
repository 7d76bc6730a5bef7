"""Nothing a bad argument does can crash the simulated kernel: every ioctl with every kind
of junk argument either succeeds or fails with an OSError carrying an errno and a sentence
(reference §1: EINVAL on /dev/kvm and vCPU fds, ENOTTY on VM fds for unknown requests)."""
import errno
import os
import random
import struct

import pytest

from kvmlab import uapi as U
from kvmlab.sim import SimBackend

REQUESTS = sorted({v for k, v in vars(U).items()
                   if k.startswith("KVM_") and isinstance(v, int) and (v >> 8) & 0xFF == 0xAE
                   and v not in (U.KVM_RUN,)})


def _junk(rng, request):
    size = (request >> 16) & 0x3FFF
    kind = rng.randrange(5)
    if kind == 0:
        return 0
    if kind == 1:
        return rng.choice([1, -1, 2 ** 31, 2 ** 63, 0xFFFFFFFF, 4096])
    if kind == 2:
        return bytearray(rng.randbytes(max(size, 1)))
    if kind == 3:
        return bytearray(rng.randbytes(rng.randrange(0, 16)))
    return bytes(rng.randbytes(max(size, 8)))


def test_junk_arguments_to_every_ioctl_only_ever_raise_oserror():
    rng = random.Random(1234)
    b = SimBackend()
    sys_fd = b.open_dev()
    vm = b.ioctl(sys_fd, U.KVM_CREATE_VM, 0)
    vcpu = b.ioctl(vm, U.KVM_CREATE_VCPU, 0)
    stats = b.ioctl(vm, U.KVM_GET_STATS_FD)
    fds = [sys_fd, vm, vcpu, stats, 99999]
    seen = set()
    for i in range(3000):
        fd = rng.choice(fds)
        req = rng.choice(REQUESTS) if rng.random() < 0.9 else rng.randrange(0, 2 ** 32)
        arg = _junk(rng, req)
        try:
            r = b.ioctl(fd, req, arg)
            assert isinstance(r, int)
        except OSError as e:
            assert e.errno in errno.errorcode, e
            assert len(str(e)) > 20, f"error without an explanation: {e!r}"
            seen.add(e.errno)
    assert {errno.EINVAL, errno.EFAULT, errno.ENOTTY, errno.EBADF} <= seen
    # the kernel is still fine afterwards
    assert b.ioctl(sys_fd, U.KVM_GET_API_VERSION) == 12


def test_short_buffers_are_efault_not_a_crash():
    b = SimBackend()
    sys_fd = b.open_dev()
    vm = b.ioctl(sys_fd, U.KVM_CREATE_VM, 0)
    for req in (U.KVM_SET_USER_MEMORY_REGION, U.KVM_IOEVENTFD, U.KVM_IRQFD,
                U.KVM_REGISTER_COALESCED_MMIO, U.KVM_GET_DIRTY_LOG):
        with pytest.raises(OSError) as e:
            b.ioctl(vm, req, bytearray(3))
        assert e.value.errno == errno.EFAULT


def test_the_stats_fd_cannot_be_mmapped_or_ioctled_and_reads_past_the_end_are_empty():
    b = SimBackend()
    vm = b.ioctl(b.open_dev(), U.KVM_CREATE_VM, 0)
    s = b.ioctl(vm, U.KVM_GET_STATS_FD)
    assert b.pread(s, 100, 1 << 20) == b""
    with pytest.raises(OSError):
        b.mmap(s, 4096, 0)
    with pytest.raises(OSError):
        b.ioctl(s, U.KVM_GET_API_VERSION)


def test_gsi_routing_and_signal_msi_validate_like_the_kernel():
    b = SimBackend()
    vm = b.ioctl(b.open_dev(), U.KVM_CREATE_VM, 0)
    r = U.kvm_irq_routing_with(1)
    r.nr = 1
    r.entries[0].gsi, r.entries[0].type = 5, 1
    r.entries[0].u.irqchip.irqchip, r.entries[0].u.irqchip.pin = 2, 5
    with pytest.raises(OSError) as e:                      # needs an irqchip
        b.ioctl(vm, U.KVM_SET_GSI_ROUTING, r)
    assert e.value.errno == errno.EINVAL
    b.ioctl(vm, U.KVM_CREATE_IRQCHIP)
    assert b.ioctl(vm, U.KVM_SET_GSI_ROUTING, r) == 0
    r.entries[0].u.irqchip.pin = 24
    with pytest.raises(OSError):
        b.ioctl(vm, U.KVM_SET_GSI_ROUTING, r)
    r.entries[0].u.irqchip.pin, r.entries[0].flags = 5, 1
    with pytest.raises(OSError):
        b.ioctl(vm, U.KVM_SET_GSI_ROUTING, r)
    st = U.kvm_irq_level(irq=4, level=1)                    # gsi 4 is no longer routed
    b.ioctl(vm, U.KVM_IRQ_LINE_STATUS, st)
    assert st.irq == 0xFFFFFFFF
    with pytest.raises(OSError) as e:                       # no LAPIC with id 7
        b.ioctl(vm, U.KVM_SIGNAL_MSI, U.kvm_msi(address_lo=0xFEE07000, data=0x30))
    assert e.value.errno == errno.EPERM
