"""Reference §1, §2: the system fd, API version, vCPU mmap size, KVM_CHECK_EXTENSION."""
import errno

import pytest

import kvmlab
from kvmlab import uapi


def test_the_api_version_is_12(kvm):
    assert kvm.api_version == 12


def test_the_vcpu_mmap_is_three_pages(kvm):
    assert kvm.vcpu_mmap_size == 12288


TEACHING_CAPS = ["KVM_CAP_IRQCHIP", "KVM_CAP_HLT", "KVM_CAP_USER_MEMORY", "KVM_CAP_SET_TSS_ADDR",
                 "KVM_CAP_EXT_CPUID", "KVM_CAP_MP_STATE", "KVM_CAP_SYNC_MMU", "KVM_CAP_USER_NMI",
                 "KVM_CAP_SET_GUEST_DEBUG", "KVM_CAP_IRQ_INJECT_STATUS", "KVM_CAP_IRQFD",
                 "KVM_CAP_SET_BOOT_CPU_ID", "KVM_CAP_IOEVENTFD", "KVM_CAP_SET_IDENTITY_MAP_ADDR",
                 "KVM_CAP_INTERNAL_ERROR_DATA", "KVM_CAP_VCPU_EVENTS", "KVM_CAP_DEBUGREGS",
                 "KVM_CAP_READONLY_MEM", "KVM_CAP_IRQFD_RESAMPLE", "KVM_CAP_IOEVENTFD_NO_LENGTH",
                 "KVM_CAP_CHECK_EXTENSION_VM", "KVM_CAP_IOEVENTFD_ANY_LENGTH", "KVM_CAP_IMMEDIATE_EXIT",
                 "KVM_CAP_COALESCED_PIO", "KVM_CAP_BINARY_STATS_FD"]


@pytest.mark.parametrize("cap", TEACHING_CAPS)
def test_every_capability_a_teaching_vmm_uses_is_present(kvm, cap):
    assert kvm.check_extension(getattr(kvmlab, cap)) > 0


@pytest.mark.parametrize("cap,value", [
    ("KVM_CAP_COALESCED_MMIO", 2),     # = page offset of the ring in the vCPU mmap
    ("KVM_CAP_NR_MEMSLOTS", 32764),
    ("KVM_CAP_MAX_VCPUS", 1024),
    ("KVM_CAP_MAX_VCPU_ID", 4096),
    ("KVM_CAP_IRQ_ROUTING", 4096),
    ("KVM_CAP_SYNC_REGS", 7),          # REGS | SREGS | EVENTS
])
def test_capabilities_with_a_value_report_that_value(kvm, cap, value):
    assert kvm.check_extension(getattr(kvmlab, cap)) == value


def test_nr_vcpus_is_a_recommendation_no_larger_than_max_vcpus(kvm):
    nr = kvm.check_extension(kvmlab.KVM_CAP_NR_VCPUS)
    assert 1 <= nr <= kvm.check_extension(kvmlab.KVM_CAP_MAX_VCPUS)


def test_an_unknown_capability_reports_0_rather_than_failing(kvm):
    assert kvm.check_extension(9999) == 0


def test_check_extension_on_a_vm_fd_agrees_with_the_system_fd(kvm, vm):
    for cap in TEACHING_CAPS + ["KVM_CAP_NR_MEMSLOTS", "KVM_CAP_COALESCED_MMIO", "KVM_CAP_MAX_VCPUS"]:
        n = getattr(kvmlab, cap)
        assert vm.check_extension(n) == kvm.check_extension(n), cap


def test_creating_a_vm_of_an_unknown_type_fails_with_EINVAL(kvm):
    with pytest.raises(kvmlab.KvmError) as e:
        kvm.create_vm(0xFF)
    assert e.value.errno == errno.EINVAL


# ---- wrong fd / unknown ioctl (§1), through the backend protocol itself -----------------
def _raw_errno(kvm, fd, request, arg=0):
    try:
        kvm.backend.ioctl(fd, request, arg)
    except OSError as e:
        return e.errno
    return 0


def test_kvm_run_on_a_vm_fd_fails_with_ENOTTY(kvm, vm):
    assert _raw_errno(kvm, vm.fd, uapi.KVM_RUN) == errno.ENOTTY


def test_an_unknown_vm_ioctl_fails_with_ENOTTY(kvm, vm):
    assert _raw_errno(kvm, vm.fd, 0xAEFF) == errno.ENOTTY


def test_create_vm_on_a_vm_fd_fails_with_ENOTTY(kvm, vm):
    assert _raw_errno(kvm, vm.fd, uapi.KVM_CREATE_VM) == errno.ENOTTY


def test_create_vcpu_on_the_system_fd_fails_with_EINVAL(kvm):
    assert _raw_errno(kvm, kvm.fd, uapi.KVM_CREATE_VCPU) == errno.EINVAL


def test_an_unknown_vcpu_ioctl_fails_with_EINVAL(kvm, vm):
    vcpu = vm.create_vcpu(0)
    assert _raw_errno(kvm, vcpu.fd, uapi.KVM_GET_API_VERSION) == errno.EINVAL


def test_mmap_of_a_vm_fd_fails_with_ENODEV(kvm, vm):
    with pytest.raises(OSError) as e:
        kvm.backend.mmap(vm.fd, 4096, 0)
    assert e.value.errno == errno.ENODEV
