"""Reference §4.1: KVM_CREATE_VCPU, and what must come before it."""
import errno

import pytest

import kvmlab


def _errno(fn, *a):
    try:
        fn(*a)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


def test_vcpu_0_can_be_created(vm):
    assert vm.create_vcpu(0).fd is not None


def test_a_duplicate_vcpu_id_fails_with_EEXIST(vm):
    vm.create_vcpu(0)
    assert _errno(vm.create_vcpu, 0) == errno.EEXIST


def test_ids_need_not_be_dense_and_4095_is_the_highest(vm):
    vm.create_vcpu(4095)


@pytest.mark.parametrize("vcpu_id", [4096, 0xFFFFFFFF, 1 << 32])
def test_an_id_at_or_above_max_vcpu_id_fails_with_EINVAL(vm, vcpu_id):
    assert _errno(vm.create_vcpu, vcpu_id) == errno.EINVAL


def test_the_1025th_vcpu_of_a_vm_fails_with_EINVAL(kvm, vm):
    # vCPU fds are created through the backend protocol: no kvm_run mmap for each
    fds = []
    try:
        for i in range(1024):
            fds.append(kvm.backend.ioctl(vm.fd, kvmlab.uapi.KVM_CREATE_VCPU, i))
        with pytest.raises(OSError) as e:
            kvm.backend.ioctl(vm.fd, kvmlab.uapi.KVM_CREATE_VCPU, 1024)
        assert e.value.errno == errno.EINVAL
    finally:
        for fd in fds:
            kvm.backend.close(fd)


def test_create_irqchip_after_a_vcpu_fails_with_EINVAL(vm):
    vm.create_vcpu(0)
    assert _errno(vm.create_irqchip) == errno.EINVAL


def test_set_boot_cpu_id_after_a_vcpu_fails_with_EBUSY(vm):
    vm.create_vcpu(0)
    assert _errno(vm.set_boot_cpu_id, 0) == errno.EBUSY


def test_set_identity_map_addr_after_a_vcpu_fails_with_EINVAL(vm):
    vm.create_vcpu(0)
    assert _errno(vm.set_identity_map_addr, 0xFEFFC000) == errno.EINVAL


def test_set_tss_addr_after_a_vcpu_is_accepted(vm):
    vm.create_vcpu(0)
    vm.set_tss_addr(0xFEFFD000)


def test_set_tss_addr_accepts_any_address_whose_3_pages_fit_below_4_gib_and_is_repeatable(vm):
    vm.set_tss_addr(0xFEFFD000)
    vm.set_tss_addr(0xFFFFFFFF - 3 * 4096)


@pytest.mark.parametrize("addr", [0x100000000, 0xFFFFF000])
def test_set_tss_addr_beyond_4_gib_fails_with_EINVAL(vm, addr):
    assert _errno(vm.set_tss_addr, addr) == errno.EINVAL


def test_the_vcpu_id_is_the_initial_apic_id(vm):
    vm.create_irqchip()
    vm.create_vcpu(0)
    v1 = vm.create_vcpu(1)
    apic_id = int.from_bytes(v1.get_lapic()[0x20:0x24], "little")
    assert apic_id == 0x01000000


def test_create_irqchip_twice_fails_with_EEXIST(vm):
    vm.create_irqchip()
    assert _errno(vm.create_irqchip) == errno.EEXIST


def test_set_identity_map_addr_before_any_vcpu_is_accepted(vm):
    vm.set_identity_map_addr(0xFEFFC000)
    vm.create_vcpu(0)


def test_set_boot_cpu_id_before_any_vcpu_is_accepted(vm):
    vm.set_boot_cpu_id(0)
