"""Reference §8.6-§8.8 and §5: ready_for_interrupt_injection / if_flag, request_interrupt_window,
KVM_INTERRUPT and KVM_NMI without an in-kernel irqchip."""
import errno

import pytest

import kvmlab
from factkit import is_pvm, real_mode

IO, HLT = kvmlab.KVM_EXIT_IO, kvmlab.KVM_EXIT_HLT


def _errno(fn, *a):
    try:
        fn(*a)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


def test_ready_for_injection_and_if_flag_follow_rflags_if_at_each_exit(vm):
    g = real_mode(vm, "cli\n out 0x80, al\n sti\n nop\n out 0x80, al\n hlt")
    run_ = g.vcpu.kvm_run
    seen = []
    for _ in range(3):
        ex = g.run()
        seen.append((ex.reason, run_.ready_for_interrupt_injection, run_.if_flag, run_.flags, run_.cr8,
                     run_.apic_base))
    assert seen == [(IO, 0, 0, 0, 0, 0xFEE00900), (IO, 1, 1, 0, 0, 0xFEE00900), (HLT, 1, 1, 0, 0, 0xFEE00900)]


def test_request_interrupt_window_exits_with_IRQ_WINDOW_OPEN_upstream_but_never_on_pvm(kvm, vm):
    g = real_mode(vm, "out 0x80, al\n hlt", rflags=0x202)
    g.vcpu.request_interrupt_window = 1
    ex = g.run()
    g.vcpu.request_interrupt_window = 0
    if is_pvm(kvm):
        # [PVM] reference §8.7 says no exit 7 was ever generated; measured here: the guest
        # usually runs on to its first exit (28 of 30 runs), but sometimes (timing-dependent,
        # presumably when KVM re-enters after a host interrupt) exit 7 does come, at an
        # instruction boundary.  So on PVM either is possible.
        assert ex.reason in (IO, kvmlab.KVM_EXIT_IRQ_WINDOW_OPEN)
    else:
        assert ex.reason == kvmlab.KVM_EXIT_IRQ_WINDOW_OPEN
        assert g.vcpu.kvm_run.ready_for_interrupt_injection == 1


@pytest.mark.parametrize("vector", [0x100, 0xFFFFFFFF])
def test_kvm_interrupt_with_a_vector_of_256_or_more_fails_with_EINVAL(vm, vector):
    v = vm.create_vcpu(0)
    assert _errno(v.interrupt, vector) == errno.EINVAL


def test_kvm_interrupt_accepts_vector_255(vm):
    vm.create_vcpu(0).interrupt(0xFF)


def test_kvm_interrupt_with_an_in_kernel_irqchip_fails_with_ENXIO(vm):
    vm.create_irqchip()
    assert _errno(vm.create_vcpu(0).interrupt, 0x40) == errno.ENXIO


def test_a_queued_interrupt_shows_in_the_sregs_interrupt_bitmap(vm):
    v = vm.create_vcpu(0)
    v.interrupt(0x41)
    assert list(v.get_sregs().interrupt_bitmap) == [0, 1 << 1, 0, 0]


def test_a_second_kvm_interrupt_before_kvm_run_replaces_the_queued_vector(vm):
    g = real_mode(vm, "sti\n nop\n hlt", ivt_stubs=0x50)
    g.vcpu.interrupt(0x40)
    g.vcpu.interrupt(0x41)
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x41"), ("HLT",)]


def test_kvm_interrupt_is_injected_at_the_next_entry_even_with_if_0(vm):
    g = real_mode(vm, "cli\n out 0x80, al\n hlt", ivt_stubs=0x50)
    assert g.run().reason == IO and g.vcpu.kvm_run.ready_for_interrupt_injection == 0
    g.vcpu.interrupt(0x41)
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x41"), ("HLT",)]
    assert list(g.vcpu.get_sregs().interrupt_bitmap) == [0, 0, 0, 0]


def test_an_interrupt_queued_through_set_sregs_interrupt_bitmap_is_injected_even_with_if_0(vm):
    g = real_mode(vm, "cli\n hlt", ivt_stubs=0x50)
    s = g.vcpu.get_sregs()
    s.interrupt_bitmap[0] = 1 << 0x30
    g.vcpu.set_sregs(s)
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x30"), ("HLT",)]


def test_kvm_nmi_without_irqchip_is_delivered_through_vector_2(vm):
    g = real_mode(vm, "nop\n hlt", ivt_stubs=8)
    g.vcpu.nmi()
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x02"), ("HLT",)]
