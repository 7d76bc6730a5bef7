"""The fast path (translated basic blocks, kvmlab.cpu.fastexec) gives exactly the slow path's
results: two identical machines, one with Core.fast on and one off, run in lockstep with the
same budgets and are compared after every run (registers, segments, control registers,
events, exit data, counters, TLB, guest memory).  Budgets 1, 2, 3, ... cut blocks at every
point.  The seed is printed; replay one with KVMLAB_DIFF_SEED=<seed>."""
import hashlib
import os
import random
import struct

import numpy as np
import pytest

from kvmlab.cpu import EXIT_HLT, EXIT_BUDGET, EXIT_SHUTDOWN
from kvmlab.cpu import layout as L
from kvmlab.asm import assemble
from kvmlab.bench import loops
from tests.cpu_reference.machine import Machine, asm, CODE, IDT
from tests.cpu_reference.proggen import Gen

BASE_SEED = int(os.environ.get('KVMLAB_DIFF_SEED', random.randrange(1 << 30)))
N_PROGS = int(os.environ.get('KVMLAB_FAST_PROGS', 40))

DATA = {16: 0x3000, 32: 0x300000, 64: 0x300000}
CODE_AT = {16: 0x1000, 32: CODE, 64: CODE}
STACK_AT = {16: 0x8000, 32: 0x90000, 64: 0x90000}

# what is compared (everything architectural or visible through the API; not the decoded
# instruction, per-instruction scratch, the caches, the tlb_hit counter, or the TLB's host
# addresses, which belong to each machine's own buffer)
IDX = np.array([i for i in range(0, 100) if i not in (L.NEXT_RIP, L.SHADOW_NEW)] + list(range(L.PEND_IRQ, L.EXIT_DATA + L.EXIT_DATA_N))
               + [L.COMP_KIND, L.COMP_N, L.COMP_GPA]
               + [L.STAT + i for i in range(L.STAT_N) if i != L.ST_TLB_HIT]
               + [L.TLB + 4 * i + f for i in range(L.TLB_N) for f in (0, 1, 3)] + list(range(L.MQ_N, L.MQ + 12)))


def A(src, bits, addr):
    mode = {16: 'real', 32: 'protected', 64: 'long'}[bits]
    return assemble('.intel_syntax noprefix\n.code%d\n' % bits + src, base=addr, mode=mode).code


def names(i):
    for n in dir(L):
        if n.isupper() and getattr(L, n) == i:
            return n
    if L.STAT <= i < L.STAT + L.STAT_N:
        return 'stat.' + L.STAT_NAMES[i - L.STAT]
    return str(i)


class Twin:
    """Two machines set up identically; [0] runs with the fast path, [1] without."""

    def __init__(self, bits, paging=None, mem_size=0x400000):
        self.bits = bits
        self.ms = []
        for fast in (True, False):
            m = Machine(mem_size=mem_size)
            if bits == 64:
                m.setup('long', paging=paging or '4level')
            elif bits == 32:
                m.setup('prot32', paging=paging)
            else:
                s = m.core.get_sregs()
                s.cs.base, s.cs.selector = 0, 0
                m.core.set_sregs(s)
            m.core.fast = fast
            self.ms.append(m)
        self.sregs = self.ms[0].core.get_sregs()

    def each(self, fn):
        for m in self.ms:
            fn(m)

    def write(self, addr, data):
        for m in self.ms:
            m.write(addr, data)

    def start(self, code, regs=None, flags=2, data=None, rip=None):
        bits = self.bits
        for m in self.ms:
            core = m.core
            core.set_sregs(self.sregs)
            m.write(CODE_AT[bits], code)
            if data is not None:
                m.write(DATA[bits], data)
            m.mem[STACK_AT[bits] - 0x100:STACK_AT[bits]] = 0
            st = core.state
            if regs is not None:
                for i in range(16):
                    v = regs[i]
                    st[i] = v - (1 << 64) if v >> 63 else v
            st[L.RSP] = STACK_AT[bits]
            st[L.RIP] = CODE_AT[bits] if rip is None else rip
            st[L.RFLAGS] = flags
            st[L.PM_GEN_SEEN] = -1

    def diffs(self, codes, full_mem=False):
        a, b = self.ms[0].core.state, self.ms[1].core.state
        out = []
        if codes[0] != codes[1]:
            out.append('exit code fast %d slow %d' % tuple(codes))
        bad = IDX[a[IDX] != b[IDX]]
        for i in bad[:8]:
            out.append('%s fast %x slow %x' % (names(int(i)), int(a[i]), int(b[i])))
        d = DATA[self.bits]
        if full_mem:
            ha = hashlib.sha256(self.ms[0].mem.tobytes()).hexdigest()
            hb = hashlib.sha256(self.ms[1].mem.tobytes()).hexdigest()
            if ha != hb:
                k = int(np.nonzero(self.ms[0].mem != self.ms[1].mem)[0][0])
                out.append('memory differs at %x' % k)
        elif self.ms[0].read(d, 0x1000) != self.ms[1].read(d, 0x1000):
            out.append('data page differs')
        return out

    def run(self, budget, max_runs=100000, between=None):
        """Run both in lockstep with this budget until an exit other than EXIT_BUDGET;
        returns (exit code, runs, diffs at the first difference or at the end)."""
        for n in range(max_runs):
            codes = [m.core.run(budget) for m in self.ms]
            d = self.diffs(codes)
            if d:
                return codes[0], n + 1, ['run %d budget %d: ' % (n + 1, budget) + x for x in d]
            if codes[0] != EXIT_BUDGET:
                break
            if between is not None:
                between(n)
        return codes[0], n + 1, self.diffs(codes, full_mem=True)


@pytest.fixture(scope='module', params=[(16, None), (32, None), (32, '32'), (64, '4level'),
                                        (64, '4level-2m')],
                ids=['real', 'prot32', 'prot32-paging', 'long-4k', 'long-2m'])
def twin(request):
    bits, paging = request.param
    return Twin(bits, paging)


def test_random_programs_on_the_fast_path_match_the_slow_path_at_every_budget(twin):
    print('seed', BASE_SEED)
    bits = twin.bits
    failures = []
    for i in range(N_PROGS):
        seed = BASE_SEED * 13 + i
        g = Gen(seed, bits)
        prog = g.program(g.r.randrange(3, 25), loop=(i % 3 != 0))
        text = '\n'.join(t for t, _ in prog)
        code = asm(text, bits, CODE_AT[bits]) + b'\xf4'
        rng = random.Random(seed)
        regs = [rng.getrandbits(64 if bits == 64 else 32) for _ in range(16)]
        if bits != 64:
            regs = regs[:8] + [0] * 8
        regs[L.RBP] = DATA[bits]
        flags = 2 | rng.choice([0, 0x8D5, rng.getrandbits(12) & 0x8D5])
        data = bytes(rng.getrandbits(8) for _ in range(0x1000))
        for budget in (1, 2, 3, 5, 8, 13, 100000):
            twin.start(code, regs, flags, data)
            code_, runs, d = twin.run(budget)
            if d or code_ not in (EXIT_HLT, EXIT_SHUTDOWN):
                failures.append('seed %d bits %d budget %d exit %d: %s -> %s'
                                % (seed, bits, budget, code_, text.replace('\n', '; '), d))
                break
    assert not failures, '%d programs differ (base seed %d):\n%s' % (
        len(failures), BASE_SEED, '\n'.join(failures[:10]))


@pytest.mark.parametrize('kind', ['tight', 'alu+mem'])
@pytest.mark.parametrize('mode', ['real', 'protected', 'long'])
def test_the_bench_loops_match_the_slow_path_at_every_budget_and_run_on_the_fast_path(mode, kind):
    bits = {'real': 16, 'protected': 32, 'long': 64}[mode]
    t = Twin(bits, '4level' if bits == 64 else None)
    src = loops.source(kind, mode, 57).replace('out 0xf4, al', 'nop')
    code = assemble(src, base=CODE_AT[bits], mode=mode).code
    for budget in list(range(1, 14)) + [1000]:
        t.start(code)
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
    n = loops.instructions(kind, 57)
    st = t.ms[0].core.state
    assert st[L.STAT + L.ST_INSNS] >= n
    assert st[L.FAST_INSNS] > 0.9 * n * 14          # nearly all of them on the fast path
    assert t.ms[1].core.state[L.FAST_INSNS] == 0


def test_budgets_are_exact_on_the_fast_path():
    t = Twin(64)
    code = A('mov ecx, 1000000\n1: dec ecx\njnz 1b\nhlt', 64, CODE)
    for budget in (1, 2, 3, 7, 1000, 99999):
        t.start(code)
        codes = [m.core.run(budget) for m in t.ms]
        assert codes == [EXIT_BUDGET, EXIT_BUDGET]
        assert not t.diffs(codes)
        assert t.ms[0].core.state[L.STAT + L.ST_INSNS] == budget
        t.each(lambda m: m.core.state.__setitem__(L.STAT + L.ST_INSNS, 0))


@pytest.mark.parametrize('bits', [32, 64])
def test_a_store_into_the_running_block_changes_the_next_instruction(bits):
    t = Twin(bits)
    src = '''
        mov ecx, 5
        xor ebx, ebx
        xor eax, eax
    top:
        mov byte ptr [target + 1], cl
    target:
        mov al, 0x11
        add ebx, eax
        dec ecx
        jnz top
        hlt
    '''
    t.start(A(src, bits, CODE))
    for budget in (1, 2, 3, 4, 5, 100):
        t.start(A(src, bits, CODE))
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
        assert t.ms[0].core.state[L.RBX] == 15


@pytest.mark.parametrize('bits', [32, 64])
def test_a_block_rewritten_by_a_later_block_runs_its_new_bytes(bits):
    t = Twin(bits)
    src = '''
        mov ecx, 3
        xor ebx, ebx
    b:
        mov edx, 0x11111111
        add ebx, edx
        jmp c
    c:
        mov dword ptr [b + 1], ecx
        dec ecx
        jnz b
        hlt
    '''
    for budget in (1, 2, 3, 100):
        t.start(A(src, bits, CODE))
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
        assert t.ms[0].core.state[L.RBX] == 0x11111111 + 3 + 2


def test_code_written_by_the_vmm_between_runs_is_executed():
    t = Twin(64)
    code = A('mov eax, 0x1234\nadd eax, 1\nhlt', 64, CODE)
    t.start(code)
    t.run(100)
    assert t.ms[0].core.state[L.RAX] == 0x1235
    t.write(CODE + 1, struct.pack('<I', 0x777))         # the immediate, as numpy stores
    t.start(code[:1] + struct.pack('<I', 0x777) + code[5:])
    c, runs, d = t.run(100)
    assert not d and c == EXIT_HLT
    assert t.ms[0].core.state[L.RAX] == 0x778
    # the same code run again without changes, then one byte of it changed in place
    t.each(lambda m: m.mem.__setitem__(CODE + 1, 0x10))
    for m in t.ms:
        m.core.state[L.RIP] = CODE
    c, runs, d = t.run(100)
    assert not d and c == EXIT_HLT
    assert t.ms[0].core.state[L.RAX] == 0x711


def pte_addr(m, cr3, lin):
    t = cr3
    for level in (4, 3, 2):
        e = m.q(t + 8 * ((lin >> (12 + 9 * (level - 1))) & 0x1FF))
        t = e & 0x000FFFFFFFFFF000
    return t + 8 * ((lin >> 12) & 0x1FF)


def test_a_page_fault_in_the_middle_of_a_block_is_precise():
    t = Twin(64)
    handler = CODE + 0x800
    src = '''
        mov eax, 1
        add ebx, eax
        mov dword ptr [rdi], eax
        mov ecx, 5
        hlt
    '''
    code = A(src, 64, CODE)
    for m in t.ms:
        cr3 = int(m.core.state[L.CR3])
        struct.pack_into('<Q', m.mem, pte_addr(m, cr3, 0x200000), 0)     # not present
        m.set_idt_gate(14, handler, True)
        m.write(handler, b'\xf4')
    fault_rip = CODE + len(A('mov eax, 1\nadd ebx, eax', 64, CODE))
    for budget in (1, 2, 3, 100):
        regs = [0] * 16
        regs[L.RDI] = 0x200010
        regs[L.RBX] = 10
        regs[L.RCX] = 77
        t.start(code, regs)
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
        st = t.ms[0].core.state
        assert st[L.RIP] == handler + 1
        assert st[L.CR2] == 0x200010
        assert st[L.RBX] == 11 and st[L.RCX] == 77
        sp = int(st[L.RSP])
        err, rip = struct.unpack_from('<QQ', t.ms[0].mem, sp)
        assert err == 2 and rip == fault_rip


@pytest.mark.parametrize('how', ['queue_interrupt', 'irq_line'])
@pytest.mark.parametrize('bits', [32, 64])
def test_an_interrupt_between_runs_arrives_at_the_same_instruction_boundary(bits, how):
    t = Twin(bits)
    handler = CODE + 0x800
    for m in t.ms:
        m.set_idt_gate(0x40, handler, bits == 64)
        m.write(handler, A('inc esi\niretq' if bits == 64 else 'inc esi\niretd', bits, handler))
    code = A('mov ecx, 200\n1: add eax, ecx\nmov [0x300000], eax\ndec ecx\njnz 1b\nhlt', bits, CODE)
    for budget in (1, 2, 3, 5, 7, 11, 50):
        t.start(code, [0] * 16, flags=0x202)

        def between(n):
            if n % 3 == 0:
                for m in t.ms:
                    if how == 'queue_interrupt':
                        m.core.queue_interrupt(0x40)
                    else:
                        m.core.set_irq_line(0x40)
        c, runs, d = t.run(budget, between=between)
        assert not d, d
        assert c == EXIT_HLT
        assert t.ms[0].core.state[L.RSI] > 0


@pytest.mark.parametrize('bits', [16, 64])
def test_an_interrupt_raised_by_another_thread_reaches_a_guest_spinning_in_one_block(bits):
    # the block branches to itself and runs again without leaving the fast path's loop; an
    # event another thread queues (an irqfd, the in-kernel LAPIC) must still be seen soon
    import threading
    t = Twin(bits)
    m = t.ms[0]
    handler = CODE_AT[bits] + 0x800
    if bits == 64:
        m.set_idt_gate(0x40, handler, True)
    else:
        m.write(0x40 * 4, struct.pack('<HH', handler, 0))
    m.write(handler, A('mov esi, 0x1234\nhlt', bits, handler))
    code = A('mov ecx, 0x7fffffff\n1: dec ecx\njnz 1b\nhlt', bits, CODE_AT[bits])
    t.start(code, [0] * 16, flags=0x202)
    timer = threading.Timer(0.2, m.core.set_irq_line, (0x40,))
    timer.start()
    try:
        code_ = m.core.run(1 << 40)     # ~4 billion instructions without the interrupt
    finally:
        timer.cancel()
    assert code_ == EXIT_HLT
    assert m.core.state[L.RSI] == 0x1234             # halted in the handler, not at the end
    assert m.core.state[L.RCX] > 0


def test_big_real_mode_and_segment_limits_fall_back_correctly():
    t = Twin(16)
    for m in t.ms:
        # IVT: #GP (13) -> 0:0x2000 hlt
        m.write(13 * 4, struct.pack('<HH', 0x2000, 0))
        m.write(0x2000, b'\xf4')
        m.write(0x200000, struct.pack('<I', 0xCAFEBABE))
    src = 'mov eax, dword ptr [esi]\nadd eax, 1\nmov dword ptr [esi + 4], eax\nhlt'
    code = A(src, 16, 0x1000)
    # unreal mode: DS limit 4 GiB, the access above 1 MiB runs
    s = t.sregs
    s.ds.limit = 0xFFFFFFFF
    t.sregs = s
    for budget in (1, 2, 100):
        regs = [0] * 16
        regs[L.RSI] = 0x200000
        t.start(code, regs)
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
        assert t.ms[0].core.state[L.RAX] == 0xCAFEBABF
        assert t.ms[0].read(0x200004, 4) == struct.pack('<I', 0xCAFEBABF)
    # the real-mode limit: #GP at the access, delivered through the IVT
    s.ds.limit = 0xFFFF
    t.sregs = s
    for budget in (1, 2, 100):
        regs = [0] * 16
        regs[L.RSI] = 0xFFFE
        t.start(code, regs)
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
        assert t.ms[0].core.state[L.RIP] == 0x2001


def test_the_fast_switch_defaults_on_and_survives_reset():
    m = Machine(0x10000)
    assert m.core.fast
    m.core.fast = False
    m.core.reset()
    assert not m.core.fast
    m.core.fast = True
    assert m.core.fast


@pytest.mark.parametrize('bits', [16, 32, 64])
def test_calls_returns_pushes_and_pops_match_the_slow_path(bits):
    t = Twin(bits)
    r = {16: ('cx', 'dx', 'bx', 2), 32: ('ecx', 'edx', 'ebx', 4), 64: ('rcx', 'rdx', 'rbx', 8)}[bits]
    src = '''
        mov ecx, 30
        xor eax, eax
    1:  push {c}
        push 0x1234
        call f
        pop {d}
        pop {b}
        add eax, edx
        push 5
        call g
        dec ecx
        jnz 1b
        hlt
    f:  add eax, 3
        ret
    g:  add eax, 7
        ret {n}
    '''.format(c=r[0], d=r[1], b=r[2], n=r[3])
    code = A(src, bits, CODE_AT[bits])
    for budget in list(range(1, 12)) + [1000]:
        t.start(code)
        c, runs, d = t.run(budget)
        assert not d, d
        assert c == EXIT_HLT
    st = t.ms[0].core.state
    assert st[L.RAX] & 0xFFFF == (30 * (3 + 0x1234 + 7)) & 0xFFFF
    assert st[L.FAST_INSNS] > 0.9 * st[L.STAT + L.ST_INSNS]


@pytest.mark.parametrize('bits', [16, 32, 64])
def test_every_condition_after_add_cmp_test_and_dec_matches_the_slow_path(bits):
    from tests.cpu_reference.proggen import CCS
    t = Twin(bits)
    for cc in CCS:
        src = '''
            mov ecx, 40
            mov ebx, 0x7ffffff0
            xor edx, edx
        1:  add ebx, 0x3fffffd
            j{cc} 2f
            inc eax
        2:  cmp ebx, edx
            j{cc} 3f
            add edx, 0x12345
        3:  test ebx, 0x8000
            j{cc} 4f
            inc esi
        4:  sub edi, 3
            j{cc} 5f
            inc edi
        5:  dec ecx
            jnz 1b
            hlt
        '''.format(cc=cc)
        code = A(src, bits, CODE_AT[bits])
        for budget in (1, 2, 3, 7, 1000):
            t.start(code)
            c, runs, d = t.run(budget)
            assert not d, (cc, d)
            assert c == EXIT_HLT


def test_coalesced_mmio_writes_on_the_fast_path_match_the_slow_path():
    t = Twin(16, mem_size=0x10000)          # 0x20000 and up: no memslot
    rings = []
    for m in t.ms:
        ring = np.zeros(4096, np.uint8)
        m.pm.set_coalesced([(0x20000, 0x1000, 0)], ring)
        rings.append(ring)
    code = A('''
        mov ax, 0x2000
        mov ds, ax
        mov ecx, 500
    1:  mov byte ptr [0], cl
        mov word ptr [bx + 2], cx
        add al, 1
        mov byte ptr [0x1001], al
        dec ecx
        jnz 1b
        hlt
    ''', 16, 0x1000)
    for budget in (1, 2, 3, 5, 100000):
        t.start(code)
        for r in rings:
            r[:] = 0
        for n in range(100000):
            codes = [m.core.run(budget) for m in t.ms]
            d = t.diffs(codes)
            assert not d, (budget, n, d)
            assert bytes(rings[0]) == bytes(rings[1]), (budget, n)
            if codes[0] == EXIT_HLT:
                break
            for r in rings:
                r[0:4] = r[4:8]          # drain: first = last
        assert t.ms[0].core.state[L.STAT + L.ST_COALESCED] > 0
    assert t.ms[0].core.state[L.FAST_INSNS] > 0.5 * t.ms[0].core.state[L.STAT + L.ST_INSNS]
