"""The kvmlab.cpu façade: reset state, exits and their completion, memslot behaviour,
coalesced MMIO, dirty logging, CPUID, MSRs, translate, guest debug."""
import numpy as np
import pytest

from kvmlab.cpu import (Core, PhysMap, CoreExit, EXIT_IO, EXIT_MMIO, EXIT_HLT, EXIT_BUDGET,
                        EXIT_INTERNAL_ERROR, EXIT_SHUTDOWN, EXIT_DEBUG, EXIT_IRQ_WINDOW)


def real_mode(code, at=0x1000, mem_size=0x10000, **slot):
    """A core in real mode with cs=0, ip=at and `code` placed there."""
    pm = PhysMap()
    mem = np.zeros(mem_size, np.uint8)
    mem[at:at + len(code)] = list(code)
    pm.set_slot(0, 0, mem, **slot)
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


def test_a_new_core_has_the_reset_state_of_reference_4_2():
    core = Core(PhysMap())
    r = core.get_regs()
    s = core.get_sregs()
    assert (r.rip, r.rflags, r.rdx) == (0xFFF0, 2, 0x600)
    assert (s.cs.base, s.cs.selector, s.cs.limit, s.cs.type, s.cs.s, s.cs.present) == (0xFFFF0000, 0xF000, 0xFFFF, 0xB, 1, 1)
    assert (s.ds.type, s.ds.limit, s.tr.type, s.tr.s, s.ldt.type) == (3, 0xFFFF, 0xB, 0, 2)
    assert (s.gdt.limit, s.idt.limit, s.cr0, s.efer, s.apic_base) == (0xFFFF, 0xFFFF, 0x60000010, 0, 0xFEE00900)
    assert core.get_debugregs()['dr6'] == 0xFFFF0FF0 and core.get_debugregs()['dr7'] == 0x400
    assert core.get_msr(0x277) == 0x0007040600070406
    assert core.get_msr(0x1A0) == 1
    assert Core(PhysMap(), vcpu_id=1).get_sregs().apic_base == 0xFEE00800


def test_out_exits_with_the_port_size_and_data_and_completes_on_reentry():
    # mov ax,0x1234 ; out 0x10,ax ; hlt
    core, _, _ = real_mode(b'\xb8\x34\x12\xe7\x10\xf4')
    assert core.run(100) == EXIT_IO
    assert core.exit.io == dict(direction=1, size=2, port=0x10, count=1, data=b'\x34\x12')
    assert core.run(100) == EXIT_HLT
    assert core.get_regs().rip == 0x1006


def test_in_exits_with_rip_on_the_instruction_and_takes_the_supplied_value():
    # mov dx,0x3f8 ; in al,dx ; hlt
    core, _, _ = real_mode(b'\xba\xf8\x03\xec\xf4')
    assert core.run(100) == EXIT_IO
    assert core.exit.io['direction'] == 0 and core.exit.io['port'] == 0x3F8
    assert core.get_regs().rip == 0x1003
    core.complete_io(b'\x99')
    assert core.run(100) == EXIT_HLT
    assert core.get_regs().rax & 0xFF == 0x99


def test_rep_outsb_exits_once_per_element_and_rep_insb_batches_to_the_page_boundary():
    # mov cx,3 ; mov si,0x2000 ; mov dx,0x80 ; rep outsb ; hlt
    core, _, mem = real_mode(b'\xb9\x03\x00\xbe\x00\x20\xba\x80\x00\xf3\x6e\xf4')
    mem[0x2000:0x2003] = [1, 2, 3]
    seen = []
    while core.run(100) == EXIT_IO:
        seen.append((core.exit.io['count'], core.exit.io['data']))
    assert seen == [(1, b'\x01'), (1, b'\x02'), (1, b'\x03')]
    # mov cx,5000 ; mov di,0x3ff0 ; mov dx,0x80 ; rep insb ; hlt  (reference §8.3)
    core, _, mem = real_mode(b'\xb9\x88\x13\xbf\xf0\x3f\xba\x80\x00\xf3\x6c\xf4')
    counts = []
    while core.run(100) == EXIT_IO:
        counts.append(core.exit.io['count'])
        core.complete_io(b'\x07' * counts[-1])
    assert counts == [16, 1024, 1024, 1024, 1024, 888]
    assert mem[0x3FF0] == 7 and mem[0x3FF0 + 4999] == 7


def test_an_access_with_no_memslot_is_an_mmio_exit_and_a_read_completes_with_the_data():
    # mov ax,[0x8000] with ds=0x1000 -> gpa 0x18000 (no slot) ; mov [0x8002],ax ; hlt
    core, _, _ = real_mode(b'\xa1\x00\x80\xa3\x02\x80\xf4')
    s = core.get_sregs()
    s.ds.base, s.ds.selector = 0x10000, 0x1000
    core.set_sregs(s)
    assert core.run(100) == EXIT_MMIO
    assert core.exit.mmio == dict(gpa=0x18000, len=2, is_write=False, data=b'')
    core.complete_io(b'\xcd\xab')
    assert core.run(100) == EXIT_MMIO
    assert core.exit.mmio == dict(gpa=0x18002, len=2, is_write=True, data=b'\xcd\xab')
    assert core.run(100) == EXIT_HLT


def test_a_write_to_a_readonly_slot_exits_and_leaves_memory_alone_while_reads_are_served():
    # mov al,[0x100] ; mov [0x100],al ; hlt   (slot READONLY)
    core, _, mem = real_mode(b'\xa0\x00\x01\xa2\x00\x01\xf4', readonly=True)
    mem[0x100] = 0x5A
    assert core.run(100) == EXIT_MMIO
    assert core.exit.mmio['is_write'] and core.exit.mmio['data'] == b'\x5a'
    assert core.get_regs().rax & 0xFF == 0x5A
    assert core.run(100) == EXIT_HLT


def test_a_fetch_from_no_memslot_is_an_emulation_failure():
    core, _, _ = real_mode(b'\xe9\x00\xf0')     # jmp 0x10003 -> outside the 64 KiB slot... (cs=0: wraps to 0x0003)
    s = core.get_sregs()
    s.cs.base, s.cs.selector = 0x20000, 0x2000
    core.set_sregs(s)
    assert core.run(100) == EXIT_INTERNAL_ERROR
    assert core.exit.internal['suberror'] == 1


def test_an_instruction_outside_the_set_is_an_emulation_failure_with_its_bytes():
    # movaps xmm0,xmm1 (0f 28 c1)
    core, _, _ = real_mode(b'\x0f\x28\xc1\xf4')
    assert core.run(100) == EXIT_INTERNAL_ERROR
    assert core.exit.internal['suberror'] == 1
    assert core.exit.internal['insn'][:3] == b'\x0f\x28\xc1'
    assert core.get_regs().rip == 0x1000


def test_ud2_is_delivered_through_the_ivt():
    # ud2 ; handler at 0x2000: hlt
    core, _, mem = real_mode(b'\x0f\x0b')
    mem[6 * 4:6 * 4 + 4] = [0x00, 0x20, 0x00, 0x00]
    mem[0x2000] = 0xF4
    assert core.run(100) == EXIT_HLT
    assert core.get_regs().rip == 0x2001
    assert bytes(mem[0x7FFA:0x8000]) == b'\x00\x10\x00\x00\x02\x00'


def test_a_triple_fault_is_a_shutdown_exit():
    # lidt [0x100] (limit 0) ; int3
    core, _, mem = real_mode(b'\x0f\x01\x1e\x00\x01\xcc')
    assert core.run(100) == EXIT_SHUTDOWN


def test_the_budget_ends_a_run_and_the_next_run_continues():
    core, _, _ = real_mode(b'\xeb\xfe')        # jmp $
    assert core.run(1000) == EXIT_BUDGET
    assert core.stats.instructions == 1000
    assert core.run(10) == EXIT_BUDGET
    assert core.stats.instructions == 1010


def test_guest_writes_set_dirty_bits_for_their_pages():
    pm = PhysMap()
    mem = np.zeros(0x10000, np.uint8)
    dirty = np.zeros(1, np.uint64)
    # mov byte [0x3000],1 ; mov byte [0x7000],1 ; hlt
    mem[0x1000:0x100b] = list(b'\xc6\x06\x00\x30\x01\xc6\x06\x00\x70\x01\xf4')
    pm.set_slot(0, 0, mem, dirty=dirty)
    core = Core(pm)
    s = core.get_sregs(); s.cs.base = 0; s.cs.selector = 0; core.set_sregs(s)
    r = core.get_regs(); r.rip = 0x1000; core.set_regs(r)
    assert core.run(100) == EXIT_HLT
    assert int(dirty[0]) == (1 << 3) | (1 << 7)


def test_coalesced_writes_go_to_the_ring_until_it_is_full():
    # mov byte [0x8000],0x11 (gpa 0x18000 with ds=0x1000) repeated via loop: mov cx,200 ; l: mov [bx],al ; inc bx ; loop l ; hlt
    core, pm, _ = real_mode(b'\xb9\xc8\x00\xbb\x00\x80\xb0\x11\x88\x07\x43\xe2\xfb\xf4')
    s = core.get_sregs(); s.ds.base, s.ds.selector = 0x10000, 0x1000; core.set_sregs(s)
    ring = np.zeros(4096, np.uint8)
    pm.set_coalesced([(0x18000, 0x1000, 0)], ring)
    exits = 0
    while core.run(10000) == EXIT_MMIO:
        exits += 1
    assert int(ring[4:8].view(np.uint32)[0]) == 169
    assert exits == 200 - 169
    e = ring[8:8 + 24]
    assert int(e[0:8].view(np.uint64)[0]) == 0x18000 and e[8] == 1 and e[16] == 0x11


def test_cpuid_reads_the_table_and_gives_zeros_without_one():
    # cpuid ; hlt
    core, _, _ = real_mode(b'\x0f\xa2\xf4')
    r = core.get_regs(); r.rax = 0; core.set_regs(r)
    core.run(10)
    assert core.get_regs().rbx == 0
    core, _, _ = real_mode(b'\x0f\xa2\xf4')
    core.set_cpuid([(0, 0, 0, 0xD, 0x756E6547, 0x6C65746E, 0x49656E69)])
    r = core.get_regs(); r.rax = 0; core.set_regs(r)
    core.run(10)
    r = core.get_regs()
    assert (r.rax, r.rbx, r.rcx, r.rdx) == (0xD, 0x756E6547, 0x6C65746E, 0x49656E69)


def test_unknown_msrs_are_refused_and_rdmsr_of_one_raises_gp_in_the_guest():
    core = Core(PhysMap())
    assert core.get_msr(0x12345678) is None
    assert core.set_msr(0x12345678, 1) is False
    assert core.set_msr(0xC0000082, 0x8000000000000000) is False     # non-canonical LSTAR
    assert core.set_msr(0xC0000082, 0xFFFFFFFF81000000) is True
    assert core.get_msr(0xC0000082) == 0xFFFFFFFF81000000


def test_translate_is_identity_without_paging():
    core = Core(PhysMap())
    assert core.translate(0x12345) == (True, 0x12345)


def test_single_step_reports_each_next_instruction_and_sw_breakpoints_stop_at_the_int3():
    # nop ; nop ; int3 ; hlt
    core, _, _ = real_mode(b'\x90\x90\xcc\xf4')
    core.set_guest_debug(0x1 | 0x2)
    assert core.run(100) == EXIT_DEBUG
    assert core.exit.debug['pc'] == 0x1001 and core.exit.debug['dr6'] == 0xFFFF4FF0
    core.set_guest_debug(0x1 | 0x10000)
    assert core.run(100) == EXIT_DEBUG
    assert core.exit.debug['exception'] == 3 and core.exit.debug['pc'] == 0x1002
    assert core.get_regs().rip == 0x1002


def test_queued_interrupts_are_injected_even_with_if_clear_and_the_window_exit_waits_for_if():
    # sti ; nop ; hlt  -- vector 0x20 handler at 0x3000: hlt
    core, _, mem = real_mode(b'\xfb\x90\xf4')
    mem[0x80:0x84] = [0x00, 0x30, 0x00, 0x00]
    mem[0x3000] = 0xF4
    core.request_interrupt_window = True
    assert core.run(100) == EXIT_IRQ_WINDOW
    assert core.get_regs().rip == 0x1002          # after sti and the shadowed nop
    core.request_interrupt_window = False
    core.queue_interrupt(0x20)
    assert core.get_sregs().interrupt_bitmap[0] == 1 << 0x20
    assert core.run(100) == EXIT_HLT
    assert core.get_regs().rip == 0x3001
