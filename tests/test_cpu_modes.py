"""Protected mode, long mode and paging on kvmlab.cpu: mode switches the way real code does
them, #PF with error code and CR2 in every paging format, IDT delivery with stack switches
(TSS RSP0 / IST), SYSCALL/SYSRET, triple fault, big real mode."""
import struct

import pytest

from kvmlab.cpu import EXIT_IO, EXIT_HLT, EXIT_SHUTDOWN
from kvmlab.cpu import layout as L
from tests.cpu_reference.machine import (Machine, asm, CODE, STACK, TSS, IDT, GDT, SEL_CODE32,
                                         SEL_DATA, SEL_CODE64, SEL_UCODE64, SEL_UDATA, SEL_TSS)


def outs(m, budget=100000, max_exits=50):
    """Run to HLT; the (port, value) of every OUT on the way."""
    seen = []
    for _ in range(max_exits):
        code = m.core.run(budget)
        if code != EXIT_IO:
            return code, seen
        io = m.core.exit.io
        seen.append((io['port'], int.from_bytes(io['data'], 'little')))
    return code, seen


def test_real_mode_code_switches_to_protected_then_long_mode_by_itself():
    m = Machine()
    m.build_gdt()
    pml4 = m.map_identity('4level-2m', size=0x400000)
    # the GDTR image at 0x7000
    m.write(0x7000, struct.pack('<HI', 0x4F, GDT))
    real = asm('cli; lgdt [0x7000]; mov eax, cr0; or al, 1; mov cr0, eax', 16, 0x8000)
    real += bytes([0x66, 0xEA]) + struct.pack('<IH', 0x9000, SEL_CODE32)     # jmp dword 0x08:0x9000
    m.write(0x8000, real)
    pm32 = asm('''mov ax, 0x10; mov ds, ax; mov es, ax; mov ss, ax; mov esp, 0x90000
                  out 0x11, al
                  mov eax, cr4; or eax, 0x20; mov cr4, eax
                  mov eax, %d; mov cr3, eax
                  mov ecx, 0xC0000080; rdmsr; or eax, 0x100; wrmsr
                  mov eax, cr0; or eax, 0x80000000; mov cr0, eax''' % pml4, 32, 0x9000)
    pm32 += bytes([0xEA]) + struct.pack('<IH', 0xA000, SEL_CODE64)          # jmp 0x18:0xA000
    m.write(0x9000, pm32)
    m.write(0xA000, asm('mov rax, 0x123456789abcdef0; mov rbx, rax; shr rbx, 32; mov eax, ebx; out 0x12, eax; hlt', 64, 0xA000))
    core = m.core
    s = core.get_sregs()
    s.cs.base, s.cs.selector = 0, 0
    core.set_sregs(s)
    r = core.get_regs()
    r.rip = 0x8000
    core.set_regs(r)
    code, seen = outs(m)
    assert code == EXIT_HLT
    assert seen == [(0x11, 0x10), (0x12, 0x12345678)]
    s = core.get_sregs()
    assert s.efer & 0x400 and s.cs.l == 1 and s.cr0 & 0x80000001 == 0x80000001


@pytest.mark.parametrize('fmt', ['32', '32pse', 'pae', '4level', '4level-2m'])
def test_a_write_to_a_read_only_page_raises_pf_with_error_code_and_cr2(fmt):
    m = Machine()
    long_mode = fmt.startswith('4level')
    m.setup('long' if long_mode else 'prot32', paging=fmt)
    bits = 64 if long_mode else 32
    # make the page holding 0x200000 read-only at the leaf (4 KiB formats) or the large page
    core = m.core
    st = core.state
    target = 0x200000
    if fmt == '32pse':
        # one 4 MiB page maps everything: alias linear 4 MiB onto physical 0 instead
        struct.pack_into('<I', m.mem, int(st[L.CR3]) + 4, 0x87)
        target = 0x400000
    valid, phys = core.translate(target)
    assert valid and phys == target & 0x3FFFFF
    leaf = leaf_entry(m, fmt, target)
    wide = fmt != '32' and fmt != '32pse'
    if wide:
        struct.pack_into('<Q', m.mem, leaf, m.q(leaf) & ~2)
    else:
        struct.pack_into('<I', m.mem, leaf, m.d(leaf) & ~2)
    st[L.CR0] |= 0x10000                     # CR0.WP: supervisor writes obey R/W
    handler = 0x180000
    m.set_idt_gate(14, handler, long_mode)
    if long_mode:
        m.write(handler, asm('pop rax; out 0x20, eax; mov rax, cr2; out 0x21, eax; hlt', 64, handler))
        m.load('mov rax, %d; mov byte ptr [rax], 1; hlt' % (target + 0x10), 64)
    else:
        m.write(handler, asm('pop eax; out 0x20, eax; mov eax, cr2; out 0x21, eax; hlt', 32, handler))
        m.load('mov eax, %d; mov byte ptr [eax], 1; hlt' % (target + 0x10), 32)
    code, seen = outs(m)
    assert code == EXIT_HLT
    assert seen == [(0x20, 0x3), (0x21, target + 0x10)]       # P=1 W=1 U=0
    assert m.mem[(target + 0x10) & 0x3FFFFF] == 0
    assert core.stats.pf_taken == 1


def leaf_entry(m, fmt, lin):
    cr3 = int(m.core.state[L.CR3])
    if fmt in ('32', '32pse'):
        pde_a = cr3 + 4 * (lin >> 22)
        if fmt == '32pse':
            return pde_a
        return (m.d(pde_a) & ~0xFFF) + 4 * ((lin >> 12) & 0x3FF)
    if fmt == 'pae':
        pd = m.q(cr3 + 8 * (lin >> 30)) & ~0xFFF
        pt = m.q(pd + 8 * ((lin >> 21) & 0x1FF)) & ~0xFFF
        return pt + 8 * ((lin >> 12) & 0x1FF)
    t = cr3
    for level in (4, 3, 2, 1):
        a = t + 8 * ((lin >> (12 + 9 * (level - 1))) & 0x1FF)
        e = m.q(a)
        if level == 1 or e & 0x80:
            return a
        t = e & 0x000FFFFFFFFFF000


def test_accessed_and_dirty_bits_are_set_by_a_write_through_4_level_paging():
    m = Machine()
    m.setup('long', paging='4level')
    m.load('mov rax, 0x300008; mov qword ptr [rax], 7; hlt', 64)
    leaf = leaf_entry(m, '4level', 0x300008)
    assert m.q(leaf) & 0x60 == 0
    assert m.core.run(100) == EXIT_HLT
    assert m.q(leaf) & 0x60 == 0x60
    code_leaf = leaf_entry(m, '4level', CODE)
    assert m.q(code_leaf) & 0x60 == 0x20          # fetched, not written


def test_executing_a_no_execute_page_faults_with_the_instruction_fetch_bit():
    m = Machine()
    m.setup('long', paging='4level', efer_extra=0x800)
    handler = 0x180000
    m.set_idt_gate(14, handler, True)
    m.write(handler, asm('pop rax; out 0x20, eax; mov rax, cr2; out 0x21, eax; hlt', 64, handler))
    leaf = leaf_entry(m, '4level', 0x201000)
    struct.pack_into('<Q', m.mem, leaf, m.q(leaf) | (1 << 63))
    m.write(0x201000, b'\xf4')                    # hlt, never reached
    m.load('mov rax, 0x201000; jmp rax', 64)
    code, seen = outs(m)
    assert seen == [(0x20, 0x11), (0x21, 0x201000)]     # P=1, I/D=1


def test_a_user_mode_int_switches_to_the_rsp0_stack_and_iretq_returns():
    m = Machine()
    m.setup('long', paging='4level-2m', cpl=3)
    struct.pack_into('<Q', m.mem, TSS + 4, 0x70000)      # RSP0
    handler = 0x180000
    m.set_idt_gate(0x80, handler, True, dpl=3)
    m.write(handler, asm('''mov rax, [rsp]; out 0x30, eax
                            mov rax, [rsp+8]; out 0x31, eax
                            mov rax, [rsp+24]; out 0x32, eax
                            mov rax, [rsp+32]; out 0x33, eax
                            mov rax, rsp; out 0x34, eax
                            iretq''', 64, handler))
    m.load('mov rsp, 0x50000; int 0x80; mov eax, 0x99; int3', 64)
    # int3 from CPL3 after the return: vector 3 gate has DPL 0 -> #GP -> no gate 13 -> ... shutdown
    code, seen = outs(m)
    ret = CODE + len(asm('mov rsp, 0x50000; int 0x80', 64, CODE))
    assert seen == [(0x30, ret), (0x31, SEL_UCODE64), (0x32, 0x50000), (0x33, SEL_UDATA),
                    (0x34, 0x70000 - 40)]
    assert code == EXIT_SHUTDOWN
    assert m.core.get_regs().rax & 0xFFFFFFFF == 0x99


def test_an_ist_entry_selects_its_own_stack():
    m = Machine()
    m.setup('long', paging='4level-2m')
    struct.pack_into('<Q', m.mem, TSS + 0x24 + 8, 0x60000)      # IST2
    handler = 0x180000
    m.set_idt_gate(6, handler, True, ist=2)
    m.write(handler, asm('mov rax, rsp; out 0x40, eax; hlt', 64, handler))
    m.load('ud2', 64)
    code, seen = outs(m)
    assert seen == [(0x40, 0x60000 - 40)] and code == EXIT_HLT


def test_a_broken_idt_in_long_mode_is_a_triple_fault_shutdown_with_state_kept():
    m = Machine()
    m.setup('long', paging='4level-2m')
    s = m.core.get_sregs()
    s.idt.limit = 0
    m.core.set_sregs(s)
    m.load('nop; ud2', 64)
    assert m.core.run(100) == EXIT_SHUTDOWN
    assert m.core.get_regs().rip == CODE + 1
    assert m.core.stats.triple_faults == 1


def test_syscall_and_sysret_move_between_user_and_kernel_mode():
    m = Machine()
    m.setup('long', paging='4level-2m', cpl=3, efer_extra=1)
    core = m.core
    assert core.set_msr(0xC0000081, (0x0023 << 48) | (SEL_CODE64 << 32))   # STAR: sysret base 0x23
    assert core.set_msr(0xC0000082, 0x180000)                              # LSTAR
    assert core.set_msr(0xC0000084, 0x200)                                 # SFMASK: IF
    m.write(0x180000, asm('mov eax, 1; out 0x50, eax; mov rax, rcx; out 0x51, eax', 64, 0x180000)
            + b'\x48\x0f\x07')                                  # sysretq
    m.load('mov rsp, 0x50000; syscall; mov eax, 2; out 0x52, eax; hlt', 64)
    code, seen = outs(m)
    after = CODE + len(asm('mov rsp, 0x50000; syscall', 64, CODE))
    assert seen[:3] == [(0x50, 1), (0x51, after), (0x52, 2)]
    s = core.get_sregs()
    assert s.cs.selector == 0x33 and s.cs.dpl == 3 and s.ss.selector == 0x2B


def test_loading_a_not_present_data_segment_raises_np_with_the_selector():
    m = Machine()
    m.setup('prot32')
    # make GDT entry 0x30 (user data) not present
    struct.pack_into('<I', m.mem, GDT + 0x30 + 4, m.d(GDT + 0x30 + 4) & ~0x8000)
    handler = 0x180000
    m.set_idt_gate(11, handler, False)
    m.write(handler, asm('pop eax; out 0x60, eax; hlt', 32, handler))
    m.load('mov ax, 0x30; mov ds, ax; hlt', 32)
    code, seen = outs(m)
    assert seen == [(0x60, 0x30)]


def test_big_real_mode_keeps_a_4g_limit_after_returning_from_protected_mode():
    m = Machine()
    m.build_gdt()
    m.write(0x7000, struct.pack('<HI', 0x4F, GDT))
    m.write(0x200000, b'\x78\x56\x34\x12')
    code = asm('cli; lgdt [0x7000]; mov eax, cr0; or al, 1; mov cr0, eax', 16, 0x8000)
    code += asm('mov bx, 0x10; mov ds, bx; and al, 0xfe; mov cr0, eax', 16, 0x8000 + len(code))
    code += bytes([0xEA]) + struct.pack('<HH', 0x8100, 0)              # jmp 0:0x8100 (real mode)
    m.write(0x8000, code)
    real = asm('xor bx, bx; mov ds, bx', 16, 0x8100)
    real += b'\x66\x67\xa1' + struct.pack('<I', 0x200000)       # mov eax, dword [dword 0x200000]
    real += asm('out 0x70, eax; hlt', 16, 0x8100 + len(real))
    m.write(0x8100, real)
    core = m.core
    s = core.get_sregs()
    s.cs.base, s.cs.selector = 0, 0
    core.set_sregs(s)
    r = core.get_regs()
    r.rip = 0x8000
    core.set_regs(r)
    code, seen = outs(m)
    assert seen == [(0x70, 0x12345678)] and code == EXIT_HLT
