"""Reference §8.4, §8.5, §8.9: completion of IN/MMIO reads on re-entry, immediate_exit,
KVM_EXIT_INTR, sync regs."""
import errno
import threading
import time

import pytest

import kvmlab
from factkit import real_mode, run

INTR = kvmlab.KVM_EXIT_INTR


def test_an_in_is_completed_on_reentry_even_with_immediate_exit_without_running_further(vm):
    g = real_mode(vm, "mov ax, 0x1111\n mov dx, 0x60\n in al, dx\nafter:\n out 0x80, al\n hlt")
    ex = g.run()
    assert ex.reason == kvmlab.KVM_EXIT_IO and ex.is_in
    assert g.regs.rax & 0xFFFF == 0x1111          # rax untouched while the IN is pending
    ex.complete(0x99)
    g.vcpu.immediate_exit = 1
    ex = g.run()
    g.vcpu.immediate_exit = 0
    assert ex.reason == INTR
    r = g.regs
    assert r.rax & 0xFFFF == 0x1199
    assert r.rip == g.sym("after")


def test_an_mmio_read_is_completed_on_reentry_with_immediate_exit(vm):
    g = real_mode(vm, "mov ax, 0x9000\n mov es, ax\n mov ebx, es:[0x10]\nafter:\n hlt")
    ex = g.run()
    assert ex.reason == kvmlab.KVM_EXIT_MMIO and not ex.is_write
    ex.complete(0xCAFEF00D)
    g.vcpu.immediate_exit = 1
    assert g.run().reason == INTR
    g.vcpu.immediate_exit = 0
    r = g.regs
    assert (r.rbx & 0xFFFFFFFF, r.rip) == (0xCAFEF00D, g.sym("after"))


def test_immediate_exit_on_the_first_run_returns_EINTR_without_entering_the_guest(vm):
    g = real_mode(vm, "out 0x80, al\n hlt")
    g.vcpu.immediate_exit = 1
    ex = g.run()
    g.vcpu.immediate_exit = 0
    assert ex.reason == INTR
    assert g.vcpu.kvm_run.exit_reason == 0       # the kernel left the field alone
    assert g.regs.rip == g.prog.entry


def test_immediate_exit_after_a_hlt_exit_leaves_rip_and_the_exit_reason_field_unchanged(vm):
    g = real_mode(vm, "hlt\nafter:\n out 0x80, al\n hlt")
    assert g.run().reason == kvmlab.KVM_EXIT_HLT
    g.vcpu.immediate_exit = 1
    assert g.run().reason == INTR
    g.vcpu.immediate_exit = 0
    assert g.vcpu.kvm_run.exit_reason == kvmlab.KVM_EXIT_HLT
    assert g.regs.rip == g.sym("after")


def test_a_kick_while_the_guest_spins_returns_EINTR_with_exit_reason_INTR(vm):
    g = real_mode(vm, "1: jmp 1b")
    ex = run(g.vcpu, timeout=0.2, allow_timeout=True)
    assert ex.reason == INTR
    assert g.vcpu.kvm_run.exit_reason == INTR
    # and the vCPU runs on afterwards
    ex = run(g.vcpu, timeout=0.1, allow_timeout=True)
    assert ex.reason == INTR


def test_sync_regs_are_filled_at_exit_when_kvm_valid_regs_is_set(vm):
    g = real_mode(vm, "mov ax, 0x1234\n out 0x80, al\nafter:\n hlt")
    g.vcpu.kvm_run.kvm_valid_regs = 7
    ex = g.run()
    assert ex.reason == kvmlab.KVM_EXIT_IO
    run_ = g.vcpu.kvm_run
    assert run_.kvm_valid_regs == 7
    assert run_.s.regs.regs.rax & 0xFFFF == 0x1234
    assert run_.s.regs.regs.rip == g.regs.rip
    assert run_.s.regs.sregs.cs.base == 0


def test_sync_regs_marked_dirty_are_loaded_on_the_next_run_and_the_dirty_mask_cleared(vm):
    g = real_mode(vm, "mov ax, 0x1234\n out 0x80, al\n out 0x81, ax\n hlt")
    g.vcpu.kvm_run.kvm_valid_regs = 7
    assert g.run().reason == kvmlab.KVM_EXIT_IO
    g.vcpu.kvm_run.s.regs.regs.rax = 0xBEEF
    g.vcpu.kvm_run.kvm_dirty_regs = 1
    ex = g.run()
    assert (ex.port, ex.value) == (0x81, 0xBEEF)
    assert g.vcpu.kvm_run.kvm_dirty_regs == 0


def test_unknown_bits_in_kvm_valid_regs_make_kvm_run_fail_with_EINVAL(vm):
    g = real_mode(vm, "hlt")
    g.vcpu.kvm_run.kvm_valid_regs = 8
    with pytest.raises(kvmlab.KvmError) as e:
        g.run()
    g.vcpu.kvm_run.kvm_valid_regs = 0
    assert e.value.errno == errno.EINVAL
