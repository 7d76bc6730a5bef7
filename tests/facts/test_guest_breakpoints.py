"""The guest's own exec breakpoints (DR0-3 with DR7 Ln/Gn, R/W=00, LEN=00; set here with
KVM_SET_DEBUGREGS) and RFLAGS.RF, in long mode.

An exec breakpoint is a fault: #DB before the instruction, RIP on it, DR6.Bn set, the saved
RFLAGS as it was (RF=0); RF=1 suppresses code breakpoints for one instruction, IRET loads
RF from the frame, and every other fault saves RFLAGS with RF=1.

Where they run on /dev/kvm here (reference §0, §19): CPL 0 code goes through KVM's
instruction emulator, which checks the guest's code breakpoints itself
(kvm_vcpu_check_code_breakpoint); CPL 3 code runs natively and [PVM] never sees the
guest's exec breakpoints (PVM does not load the guest's DR7, as the debugger's data
watchpoints never fire there, §9).  Upstream (and the simulator) they fire at CPL 3 too.
"""
import pytest

import cpl3
from factkit import is_pvm

DB, UD = 1, 6
RF = 1 << 16
SRC = """
    mov eax, 1
brk: add eax, 2
    add eax, 4
    ud2
"""


def _guest(kvm, vm, dr7, *, cpl=0, rflags=2, src=SRC, at="brk", **kw):
    g = cpl3.Cpl3Guest(vm, src, cpuid=cpl3.supported_cpuid(kvm), cpl=cpl, **kw)
    g.vcpu.set_debugregs(db=tuple(g.sym(at) if i == (kw.get("slot", 0)) else 0 for i in range(4)),
                         dr6=0xFFFF0FF0, dr7=dr7)
    r = g.vcpu.get_regs()
    g.vcpu.set_regs(rip=r.rip, rsp=r.rsp, rflags=rflags)
    exits = g.run()
    assert exits[-1] == ("HLT",), exits
    return g


def _fires(kvm, cpl):
    return not (cpl == 3 and is_pvm(kvm))


@pytest.mark.parametrize("cpl", [0, 3])
@pytest.mark.parametrize("slot,enable", [(0, "L"), (0, "G"), (3, "L"), (2, "G")])
def test_an_exec_breakpoint_is_a_db_fault_before_the_instruction(kvm, vm, cpl, slot, enable):
    dr7 = 0x400 | (1 << (2 * slot + (1 if enable == "G" else 0)))
    g = cpl3.Cpl3Guest(vm, SRC, cpuid=cpl3.supported_cpuid(kvm), cpl=cpl)
    g.vcpu.set_debugregs(db=tuple(g.sym("brk") if i == slot else 0x7000 for i in range(4)), dr7=dr7)
    assert g.run()[-1] == ("HLT",)
    vec, _, _, rip, rflags = g.outcome()
    r = g.vcpu.get_regs()
    if _fires(kvm, cpl):
        assert (vec, rip, rflags & RF, r.rax) == (DB, g.sym("brk"), 0, 1)     # before the add
        assert g.vcpu.get_debugregs().dr6 == 0xFFFF0FF0 | (1 << slot)
    else:
        assert (vec, r.rax) == (UD, 7)


@pytest.mark.parametrize("dr7", [0x400, 0x400 | 1 | (1 << 16), 0x400 | 1 | (3 << 16), 0x400 | 1 | (1 << 18),
                                 0x400 | 4], ids=["disabled", "rw-write", "rw-access", "len-2", "other-slot"])
def test_a_breakpoint_that_is_not_an_enabled_exec_breakpoint_on_the_address_does_not_fire(kvm, vm, dr7):
    g = _guest(kvm, vm, dr7)
    vec, _, _, rip, _ = g.outcome()
    assert (vec, rip, g.vcpu.get_regs().rax) == (UD, g.sym("brk") + 6, 7)


@pytest.mark.parametrize("cpl", [0, 3])
def test_rf_suppresses_code_breakpoints_for_one_instruction_only(kvm, vm, make_vm, cpl):
    # the breakpoint on the first instruction: RF=1 at entry skips it
    g = _guest(kvm, vm, 0x401, cpl=cpl, rflags=2 | RF, src="brk: mov eax, 1\n add eax, 2\n ud2")
    vec, _, _, rip, rflags = g.outcome()
    assert (vec, g.vcpu.get_regs().rax) == (UD, 3)
    assert rflags & RF                      # #UD is a fault: its saved RFLAGS has RF=1
    # on the second instruction: RF was cleared by the first, the breakpoint fires
    g = _guest(kvm, make_vm(), 0x401, cpl=cpl, rflags=2 | RF)
    vec, _, _, rip, rflags = g.outcome()
    if _fires(kvm, cpl):
        assert (vec, rip, rflags & RF) == (DB, g.sym("brk"), 0)
    else:
        assert vec == UD


def test_a_handler_that_sets_rf_in_the_frame_resumes_past_the_breakpoint_once(kvm, vm):
    g = _guest(kvm, vm, 0x401, db_resume=True)
    r = g.vcpu.get_regs()
    vec, _, _, rip, rflags = g.outcome()
    assert (r.r10, r.r9) == (1, 0xFFFF0FF1)                     # one #DB, DR6.B0 in the handler
    assert (vec, r.rax, rip, rflags & RF) == (UD, 7, g.sym("brk") + 6, RF)


def test_a_breakpoint_in_a_loop_fires_on_every_pass(kvm, vm):
    src = """
        mov ecx, 3
    brk: dec ecx
        jnz brk
        ud2
    """
    g = _guest(kvm, vm, 0x401, src=src, db_resume=True)
    assert (g.vcpu.get_regs().r10, g.outcome()[0]) == (3, UD)
