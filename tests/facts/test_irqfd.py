"""Reference §13: the in-kernel irqchip, KVM_IRQ_LINE(_STATUS), KVM_IRQFD."""
import errno
import os
import threading
import time

import pytest

import kvmlab
import modes
from factkit import describe, eventfd_count, real_mode, run

IO = kvmlab.KVM_EXIT_IO


def _errno(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except kvmlab.KvmError as e:
        return e.errno
    return 0


# ---- reset state -------------------------------------------------------------------------
@pytest.mark.parametrize("chip,elcr_mask", [(0, 0xF8), (1, 0xDE)], ids=["master", "slave"])
def test_after_create_irqchip_each_pic_is_clear_unmasked_with_vector_base_0(vm, chip, elcr_mask):
    vm.create_irqchip()
    p = vm.get_irqchip(chip).chip.pic
    assert (p.irr, p.imr, p.isr, p.irq_base, p.init4, p.elcr, p.elcr_mask) == (0, 0, 0, 0, 0, 0, elcr_mask)


def test_after_create_irqchip_the_ioapic_is_at_0xfec00000_with_all_24_pins_masked(vm):
    vm.create_irqchip()
    io = vm.get_irqchip(2).chip.ioapic
    assert (io.base_address, io.id, io.irr) == (0xFEC00000, 0, 0)
    assert [e.bits for e in io.redirtbl] == [0x10000] * 24


def test_with_irqchip_lapic_and_ioapic_mmio_are_handled_in_the_kernel(vm):
    vm.create_irqchip()
    mem = kvmlab.GuestMemory(0x20000)
    vm.set_user_memory_region(0, 0, mem)
    from kvmlab.asm import assemble
    prog = assemble(""".code32
        mov eax, [0xfee00030]
        out 0x80, eax
        mov dword ptr [0xfec00000], 1
        mov eax, [0xfec00010]
        out 0x84, eax
        hlt""", base=0x1000)
    mem.write(0x1000, prog.code)
    v = vm.create_vcpu(0)
    modes.set_protected_flat(v, mem, 0x1000)
    e1 = describe(run(v))      # exit objects read the live kvm_run page: snapshot each at once
    e2 = describe(run(v))
    assert (e1, e2) == (("IO", "out", 0x80, 4, 1, (0x50014).to_bytes(4, "little")),
                                           ("IO", "out", 0x84, 4, 1, (0x00170011).to_bytes(4, "little")))


def test_with_irqchip_pic_port_writes_do_not_exit(vm):
    g = real_mode(vm, "mov al, 0xff\n out 0x21, al\n out 0xa1, al\n out 0x80, al\n hlt", irqchip=True)
    assert describe(g.run()) == ("IO", "out", 0x80, 1, 1, b"\xff")
    assert vm.get_irqchip(0).chip.pic.imr == 0xFF


# ---- KVM_IRQ_LINE ------------------------------------------------------------------------
def test_irq_line_without_irqchip_fails_with_ENXIO(vm):
    assert _errno(vm.irq_line, 4, 1) == errno.ENXIO


def test_irq_line_status_without_irqchip_fails_with_ENXIO(vm):
    assert _errno(vm.irq_line, 4, 1, status=True) == errno.ENXIO


PIC_GUEST = """
    xor ax, ax
    mov ds, ax
    mov word ptr [0x24*4], offset h24
    mov word ptr [0x24*4+2], 0
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
    xor al, al
    out 0x21, al
    out 0xa1, al
    mov al, 0xaa
    out 0x99, al
    sti
1:  hlt
    jmp 1b
h24:
    mov al, 0x24
    out 0xee, al
    mov al, 0x20
    out 0x20, al
    iret"""


def _pic_guest(vm):
    """A guest that programs the PIC (vector base 0x20), says so with OUT 0x99, then
    waits in sti; hlt.  Its IRQ 4 handler does OUT 0xEE, 0x24 then EOI."""
    g = real_mode(vm, PIC_GUEST, irqchip=True)
    assert describe(g.run()) == ("IO", "out", 0x99, 1, 1, b"\xaa")
    return g


def test_irq_line_status_is_the_sum_over_the_routes_and_minus_1_without_a_route(vm):
    g = _pic_guest(vm)
    assert vm.irq_line(4, 1, status=True) == 1
    assert vm.irq_line(4, 1, status=True) == 1
    assert vm.irq_line(4, 0, status=True) == 2
    assert describe(g.run()) == ("IO", "out", 0xEE, 1, 1, b"\x24")
    assert vm.irq_line(200, 1, status=True) == -1
    assert vm.irq_line(5000, 1, status=True) == -1


# ---- KVM_IRQFD delivery --------------------------------------------------------------------
def test_irqfd_without_irqchip_fails_with_EINVAL(vm, eventfd):
    assert _errno(vm.irqfd, eventfd(), 4) == errno.EINVAL


def test_an_irqfd_written_before_kvm_run_arrives_as_vector_n_through_the_unprogrammed_pic(vm, eventfd):
    g = real_mode(vm, "sti\n1: hlt\n jmp 1b", irqchip=True, ivt_stubs=16)
    e = eventfd()
    vm.irqfd(e, 4)
    os.eventfd_write(e, 1)
    assert describe(g.run()) == ("IO", "out", 0xEE, 1, 1, b"\x04")
    assert vm.get_irqchip(0).chip.pic.isr == 1 << 4          # no EOI was sent


def test_an_irqfd_written_from_another_thread_wakes_the_vcpu_halted_in_the_kernel(vm, eventfd):
    g = _pic_guest(vm)
    e = eventfd()
    vm.irqfd(e, 4)
    t = threading.Timer(0.2, os.eventfd_write, (e, 1))
    t0 = time.monotonic()
    t.start()
    ex = run(g.vcpu, timeout=3)
    elapsed = time.monotonic() - t0
    t.join()
    assert describe(ex) == ("IO", "out", 0xEE, 1, 1, b"\x24")       # no exit before the interrupt
    assert elapsed >= 0.15
    assert vm.get_irqchip(0).chip.pic.isr == 1 << 4
    # the handler's EOI (out 0x20, 0x20) is in-kernel: the guest goes back to hlt without exits
    assert run(g.vcpu, timeout=0.3, allow_timeout=True).reason == kvmlab.KVM_EXIT_INTR
    p = vm.get_irqchip(0).chip.pic
    assert (p.isr, p.irr) == (0, 0)


def test_a_signal_while_halted_in_the_kernel_gives_INTR_with_mp_state_halted_and_rip_past_the_hlt(vm):
    g = _pic_guest(vm)
    assert run(g.vcpu, timeout=0.2, allow_timeout=True).reason == kvmlab.KVM_EXIT_INTR
    assert g.vcpu.kvm_run.exit_reason == kvmlab.KVM_EXIT_INTR
    assert g.vcpu.get_mp_state() == kvmlab.KVM_MP_STATE_HALTED
    code = g.mem.read(g.regs.rip - 1, 1)
    assert code == b"\xf4"                                      # rip is just past the hlt


def test_a_resample_irqfd_signals_the_resamplefd_when_the_guest_sends_eoi(vm, eventfd):
    g = _pic_guest(vm)
    e, r = eventfd(), eventfd()
    vm.irqfd(e, 4, resamplefd=r)
    os.eventfd_write(e, 1)
    assert describe(run(g.vcpu)) == ("IO", "out", 0xEE, 1, 1, b"\x24")
    assert eventfd_count(r) == 0                              # before EOI
    assert run(g.vcpu, timeout=0.3, allow_timeout=True).reason == kvmlab.KVM_EXIT_INTR
    assert eventfd_count(r) == 1                              # after EOI
    p = vm.get_irqchip(0).chip.pic
    assert (p.isr, p.irr) == (0, 0)


# ---- KVM_IRQFD errors ----------------------------------------------------------------------
@pytest.fixture
def chip_vm(vm):
    vm.create_irqchip()
    return vm


def test_assigning_the_same_eventfd_twice_fails_with_EBUSY_for_any_gsi(chip_vm, eventfd):
    e = eventfd()
    chip_vm.irqfd(e, 4)
    assert _errno(chip_vm.irqfd, e, 4) == errno.EBUSY
    assert _errno(chip_vm.irqfd, e, 5) == errno.EBUSY


@pytest.mark.parametrize("gsi", [100, 5000])
def test_an_irqfd_on_a_gsi_without_a_route_is_accepted(chip_vm, eventfd, gsi):
    chip_vm.irqfd(eventfd(), gsi)


def test_an_irqfd_with_fd_minus_1_fails_with_EBADF(chip_vm):
    assert _errno(chip_vm.irqfd, -1, 4) == errno.EBADF


def test_an_irqfd_on_a_file_that_is_not_an_eventfd_fails_with_EINVAL(chip_vm):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert _errno(chip_vm.irqfd, fd, 4) == errno.EINVAL
    finally:
        os.close(fd)


def test_an_unknown_irqfd_flag_fails_with_EINVAL(chip_vm, eventfd):
    assert _errno(chip_vm.irqfd, eventfd(), 6, flags=4) == errno.EINVAL


def test_resample_with_resamplefd_minus_1_fails_with_EBADF(chip_vm, eventfd):
    assert _errno(chip_vm.irqfd, eventfd(), 6, resamplefd=-1) == errno.EBADF


def test_deassigning_an_irqfd_succeeds_even_when_it_does_not_exist(chip_vm, eventfd):
    e = eventfd()
    chip_vm.irqfd(e, 4)
    assert _errno(chip_vm.irqfd, e, 4, deassign=True) == 0
    assert _errno(chip_vm.irqfd, e, 4, deassign=True) == 0
    assert _errno(chip_vm.irqfd, e, 4, flags=kvmlab.KVM_IRQFD_FLAG_RESAMPLE, deassign=True) == 0


# ---- KVM_CREATE_PIT2 (§13.1) ----------------------------------------------------------------
def test_create_pit2_without_irqchip_fails_with_ENOENT(vm):
    assert _errno(vm.create_pit2) == errno.ENOENT


def test_create_pit2_twice_fails_with_EEXIST(vm):
    vm.create_irqchip()
    vm.create_pit2()
    assert _errno(vm.create_pit2) == errno.EEXIST


PIT_GUEST = "mov al, 0x34\n out 0x43, al\n in al, 0x40\n in al, 0x61\n out 0x80, al\n hlt"


def test_without_a_pit_the_pit_ports_exit(vm):
    g = real_mode(vm, PIT_GUEST, irqchip=True)
    assert describe(g.run()) == ("IO", "out", 0x43, 1, 1, b"\x34")


def test_with_pit2_the_pit_ports_are_in_kernel_but_port_0x61_still_exits(vm):
    g = real_mode(vm, PIT_GUEST, irqchip=True)
    vm.create_pit2()
    assert describe(g.run()) == ("IO", "in", 0x61, 1, 1, None)


def test_with_pit2_speaker_dummy_port_0x61_is_in_kernel_too(vm):
    g = real_mode(vm, PIT_GUEST, irqchip=True)
    vm.create_pit2(flags=kvmlab.KVM_PIT_SPEAKER_DUMMY)
    assert describe(g.run())[:3] == ("IO", "out", 0x80)
