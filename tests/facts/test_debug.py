"""Reference §9: KVM_SET_GUEST_DEBUG and KVM_EXIT_DEBUG (real mode)."""
import kvmlab
from factkit import describe, is_pvm, real_mode

DEBUG, IO, HLT = kvmlab.KVM_EXIT_DEBUG, kvmlab.KVM_EXIT_IO, kvmlab.KVM_EXIT_HLT
DR6_BS = 0xFFFF4FF0      # single step: BS | fixed bits | RTM
DR6_B0 = 0xFFFF0FF1

SRC = """
        mov ax, 1
    i1: mov bx, 2
    i2: add ax, bx
    i3: out 0x80, al
    i4: hlt
    i5:"""


def _dbg(ex):
    return (ex.reason, ex.exception, ex.pc, ex.dr6) if ex.reason == DEBUG else describe(ex)


def test_single_step_exits_after_each_instruction_with_pc_of_the_next_and_dr6_bs(vm):
    g = real_mode(vm, SRC, ivt_stubs=8)
    g.vcpu.set_guest_debug(singlestep=True)
    got = [_dbg(g.run()) for _ in range(3)]
    assert got == [(DEBUG, 1, g.sym("i1"), DR6_BS), (DEBUG, 1, g.sym("i2"), DR6_BS),
                   (DEBUG, 1, g.sym("i3"), DR6_BS)]
    assert g.regs.rip == g.sym("i3")


def test_under_single_step_an_io_exit_replaces_the_debug_exit_of_that_step(vm):
    g = real_mode(vm, SRC, ivt_stubs=8)
    g.vcpu.set_guest_debug(singlestep=True)
    for _ in range(3):
        assert g.run().reason == DEBUG
    assert describe(g.run()) == ("IO", "out", 0x80, 1, 1, b"\x03")


def test_hlt_under_single_step_is_a_debug_exit_on_pvm_and_a_hlt_exit_upstream(kvm, vm):
    g = real_mode(vm, "hlt\nafter:\n hlt", ivt_stubs=8)
    g.vcpu.set_guest_debug(singlestep=True)
    ex = g.run()
    if is_pvm(kvm):
        assert (ex.reason, ex.exception, ex.pc, ex.dr6, ex.dr7) == (DEBUG, 1, g.sym("after"), DR6_BS, 0)
    else:
        assert ex.reason == HLT


def test_a_hardware_exec_breakpoint_exits_before_the_instruction_with_dr6_b0(kvm, vm):
    g = real_mode(vm, SRC, ivt_stubs=8)
    g.vcpu.set_guest_debug(hw_bp=True, debugreg=[g.sym("i2"), 0, 0, 0, 0, 0, 0, 0x1])
    ex = g.run()
    assert (ex.reason, ex.exception, ex.pc, ex.dr6) == (DEBUG, 1, g.sym("i2"), DR6_B0)
    assert g.regs.rip == g.sym("i2")
    # reference: dr7 reported 0 on PVM, the effective debugger DR7 (0x401) upstream
    assert ex.dr7 == (0 if is_pvm(kvm) else 0x401)
    g.vcpu.set_guest_debug()          # breakpoint off, continue
    assert g.run_until() == [("IO", "out", 0x80, 1, 1, b"\x03"), ("HLT",)]


def test_a_software_breakpoint_exits_with_exception_3_upstream_but_reaches_the_guest_ivt_on_pvm(kvm, vm):
    g = real_mode(vm, "mov ax, 1\n bp: int3\n mov bx, 2\n hlt", ivt_stubs=8)
    g.vcpu.set_guest_debug(sw_bp=True)
    ex = g.run()
    if is_pvm(kvm):
        assert describe(ex) == ("IO", "out", 0xEE, 1, 1, b"\x03")
    else:
        assert (ex.reason, ex.exception, ex.pc) == (DEBUG, 3, g.sym("bp"))


def test_a_data_write_watchpoint_traps_after_the_write_upstream_and_never_fires_on_pvm(kvm, vm):
    g = real_mode(vm, "mov byte ptr [0x3000], 5\n next: mov al, 1\n out 0x80, al\n hlt", ivt_stubs=8)
    dr7 = (1 << 2) | (0b01 << 20)          # L1, RW1 = write, LEN1 = 1 byte
    g.vcpu.set_guest_debug(hw_bp=True, debugreg=[0, 0x3000, 0, 0, 0, 0, 0, dr7])
    ex = g.run()
    if is_pvm(kvm):
        assert describe(ex) == ("IO", "out", 0x80, 1, 1, b"\x01")
    else:
        assert (ex.reason, ex.exception, ex.pc, ex.dr6 & 0xF) == (DEBUG, 1, g.sym("next"), 0x2)
    assert g.mem.read(0x3000, 1) == b"\x05"


def test_unknown_control_bits_are_accepted_on_x86(vm):
    vm.create_vcpu(0).set_guest_debug(control=kvmlab.KVM_GUESTDBG_ENABLE | (1 << 30))


def test_inject_bp_delivers_a_breakpoint_exception_to_the_guest_at_the_next_entry(vm):
    g = real_mode(vm, "nop\n hlt", ivt_stubs=8)
    g.vcpu.set_guest_debug(inject_bp=True)
    assert g.run_until() == [("IO", "out", 0xEE, 1, 1, b"\x03"), ("HLT",)]
