"""The guest's own exec breakpoints on kvmlab.cpu beyond what tests/facts checks on both
backends: real mode (#DB through the IVT), and a breakpoint on the #DB handler itself
(an endless stream of #DBs, as on hardware) still ends each run at its budget."""
from kvmlab.cpu import EXIT_BUDGET, EXIT_HLT
from tests.cpu_reference.machine import Machine, asm


def _real(code, handler):
    m = Machine()
    m.write(0x1000, asm(code, 16, 0x1000))
    m.write(0x2000, asm(handler, 16, 0x2000))
    m.write(4 * 1, (0x2000).to_bytes(2, 'little') + (0).to_bytes(2, 'little'))    # IVT[1] = 0:0x2000
    core = m.core
    s = core.get_sregs()
    s.cs.base, s.cs.selector = 0, 0
    s.ss.base, s.ss.selector = 0, 0
    core.set_sregs(s)
    r = core.get_regs()
    r.rip, r.rsp = 0x1000, 0x8000
    core.set_regs(r)
    return m, core


def test_a_real_mode_exec_breakpoint_goes_through_the_ivt_before_the_instruction():
    m, core = _real('mov ax, 1; add ax, 2; hlt', 'mov ebx, dr6; mov cx, sp; hlt')
    core.set_debugregs(db=[0x1003, 0, 0, 0], dr7=0x401)
    assert core.run(1000) == EXIT_HLT
    r = core.get_regs()
    assert (r.rax, r.rbx & 0xF, r.rcx) == (1, 1, 0x8000 - 6)
    assert int.from_bytes(m.read(0x8000 - 6, 2), 'little') == 0x1003      # the IP pushed: the add


def test_a_breakpoint_on_the_db_handler_loops_on_db_but_each_run_returns_at_its_budget():
    m, core = _real('nop; hlt', 'nop; iret')
    core.set_debugregs(db=[0x1000, 0x2000, 0, 0], dr7=0x405)
    for _ in range(3):
        assert core.run(500) == EXIT_BUDGET
    assert core.get_regs().rip == 0x2000
