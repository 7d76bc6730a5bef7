"""The core's locked-instruction protocol (what makes LOCK / XCHG atomic across vCPU threads):
with ``pm.smp`` set, a LOCK-prefixed instruction with a memory operand or an XCHG with a
memory operand ends the run with EXIT_LOCKED before it executes, unless
``core.allow_locked`` is set; the flag lets exactly one such instruction start."""
import numpy as np

from kvmlab.cpu import (Core, PhysMap, CoreExit, EXIT_LOCKED, EXIT_BUDGET, EXIT_HLT, EXIT_MMIO,
                        EXIT_DEBUG)

# inc ax ; lock inc word [0x2000] ; xchg bx,cx ; xchg [0x2002],ax ; hlt
CODE = b'\x40' + b'\xf0\xff\x06\x00\x20' + b'\x87\xd9' + b'\x87\x06\x02\x20' + b'\xf4'


def real_mode(code, at=0x1000, mem_size=0x10000):
    pm = PhysMap()
    mem = np.zeros(mem_size, np.uint8)
    mem[at:at + len(code)] = list(code)
    pm.set_slot(0, 0, mem)
    core = Core(pm)
    s = core.get_sregs()
    s.cs.base = 0
    s.cs.selector = 0
    core.set_sregs(s)
    r = core.get_regs()
    r.rip = at
    r.rsp = 0x8000
    core.set_regs(r)
    return core, pm, mem


def word(mem, a):
    return int(mem[a]) | int(mem[a + 1]) << 8


def test_without_smp_locked_instructions_run_straight_through():
    core, pm, mem = real_mode(CODE)
    assert not pm.smp and not core.allow_locked
    assert core.run(100) == EXIT_HLT
    assert word(mem, 0x2000) == 1 and word(mem, 0x2002) == 1
    assert core.stats.instructions == 5


def test_with_smp_each_locked_instruction_exits_before_it_runs_until_allowed_once():
    core, pm, mem = real_mode(CODE)
    pm.smp = True
    assert CoreExit(EXIT_LOCKED).name == 'LOCKED'
    assert core.run(100) == EXIT_LOCKED
    assert core.get_regs().rip == 0x1001 and core.get_regs().rax & 0xFFFF == 1
    assert word(mem, 0x2000) == 0 and core.stats.instructions == 1
    assert core.run(100) == EXIT_LOCKED          # nothing executed: the same place again
    assert core.get_regs().rip == 0x1001 and core.stats.instructions == 1
    core.allow_locked = True
    # lock inc runs, xchg bx,cx (registers) needs no lock, xchg [mem],ax exits
    assert core.run(100) == EXIT_LOCKED
    assert not core.allow_locked
    assert core.get_regs().rip == 0x1008 and word(mem, 0x2000) == 1 and word(mem, 0x2002) == 0
    core.allow_locked = True
    assert core.run(1) == EXIT_BUDGET
    assert core.get_regs().rip == 0x100C and word(mem, 0x2002) == 1
    assert core.run(100) == EXIT_HLT
    assert core.stats.instructions == 5


def test_a_locked_rmw_on_mmio_exits_for_the_read_and_the_write():
    # lock inc word [0x8000] with ds = 0x2000 (gpa 0x28000: no memslot) ; hlt
    core, pm, mem = real_mode(b'\xf0\xff\x06\x00\x80\xf4')
    s = core.get_sregs()
    s.ds.base, s.ds.selector = 0x20000, 0x2000
    core.set_sregs(s)
    pm.smp = True
    assert core.run(100) == EXIT_LOCKED
    core.allow_locked = True
    assert core.run(1) == EXIT_MMIO
    assert core.exit.mmio['gpa'] == 0x28000 and not core.exit.mmio['is_write']
    assert core.get_regs().rip == 0x1000 and not core.allow_locked
    core.complete_io(b'\x41\x00')
    assert core.run(1) == EXIT_LOCKED            # the replay is locked too
    core.allow_locked = True
    assert core.run(1) == EXIT_MMIO
    assert core.exit.mmio == dict(gpa=0x28000, len=2, is_write=True, data=b'\x42\x00')
    assert core.get_regs().rip == 0x1005
    assert core.run(100) == EXIT_HLT


def test_single_step_and_an_exec_breakpoint_on_a_locked_instruction():
    core, pm, mem = real_mode(CODE)
    pm.smp = True
    # USE_HW_BP with an execute breakpoint (DR0) on the lock inc
    core.set_guest_debug(0x1 | 0x20000, [0x1001, 0, 0, 0, 0, 0, 0, 0x1])
    assert core.run(100) == EXIT_DEBUG and core.exit.debug['pc'] == 0x1001
    assert core.run(100) == EXIT_LOCKED
    core.allow_locked = True
    assert core.run(1) == EXIT_BUDGET             # the breakpoint does not fire a second time
    assert core.get_regs().rip == 0x1006 and word(mem, 0x2000) == 1
    # single-step: the locked xchg reports the next instruction once it ran
    core.set_guest_debug(0x1 | 0x2)
    assert core.run(100) == EXIT_DEBUG and core.exit.debug['pc'] == 0x1008
    assert core.run(100) == EXIT_LOCKED
    core.allow_locked = True
    assert core.run(100) == EXIT_DEBUG and core.exit.debug['pc'] == 0x100C
    assert word(mem, 0x2002) == 1
