"""A guest that never exits cannot hang the Python process: a kick from another thread
gives an INTR exit, and Ctrl-C (SIGINT) raises KeyboardInterrupt out of ``run()``."""
import os
import signal
import threading

import pytest

import kvmlab
from kvmlab.asm import assemble
from kvmlab.hw import unusable_reason

SPIN = assemble(".code16\n1: jmp 1b\n", base=0x1000).code   # jmp $ forever


def backends():
    out = []
    for b in ("hw", "sim"):
        marks = []
        if b == "hw" and unusable_reason():
            marks.append(pytest.mark.skip(reason=unusable_reason()))
        out.append(pytest.param(b, marks=marks))
    return out


def spinning_vcpu(backend):
    try:
        kvm = kvmlab.open(backend)
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    vm = kvm.create_vm()
    mem = kvmlab.GuestMemory(0x10000)
    vm.set_user_memory_region(0, 0, mem)
    mem.write(0x1000, SPIN)
    vcpu = vm.create_vcpu(0)
    s = vcpu.get_sregs()
    s.cs.base, s.cs.selector = 0, 0
    vcpu.set_sregs(s)
    vcpu.set_regs(rip=0x1000, rflags=2)
    return vm, mem, vcpu


@pytest.mark.parametrize("backend", backends())
def test_a_kick_from_another_thread_ends_a_spinning_run_with_an_intr_exit(backend):
    vm, mem, vcpu = spinning_vcpu(backend)
    timer = threading.Timer(0.2, vcpu.kick)
    timer.start()
    try:
        e = vcpu.run()
    finally:
        timer.cancel()
    assert e.reason == kvmlab.KVM_EXIT_INTR
    assert vcpu.immediate_exit == 0          # the kick's immediate_exit was consumed
    assert vcpu.get_regs().rip == 0x1000     # still spinning on its jmp


@pytest.mark.parametrize("backend", backends())
def test_ctrl_c_during_run_raises_keyboard_interrupt(backend):
    vm, mem, vcpu = spinning_vcpu(backend)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            vcpu.run()
    finally:
        timer.cancel()


@pytest.mark.parametrize("backend", backends())
def test_immediate_exit_returns_at_once_without_running_the_guest(backend):
    vm, mem, vcpu = spinning_vcpu(backend)
    vcpu.immediate_exit = 1
    assert vcpu.run().reason == kvmlab.KVM_EXIT_INTR
    assert vcpu.get_regs().rip == 0x1000
