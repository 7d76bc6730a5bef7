"""Seeded generator of random integer programs for differential tests (kvmlab.cpu vs
unicorn).  A program is a list of (assembly text, undefined-flags mask).  Memory operands
address a data page through rBP (never a destination), so both machines see the same memory.
"""
import random

from kvmlab.cpu import layout as L

CF, PF, AF, ZF, SF, OF = L.F_CF, L.F_PF, L.F_AF, L.F_ZF, L.F_SF, L.F_OF
ALL = CF | PF | AF | ZF | SF | OF

REGS = {
    8: ['al', 'bl', 'cl', 'dl', 'ah', 'bh', 'ch', 'dh'],
    16: ['ax', 'bx', 'cx', 'dx', 'si', 'di'],
    32: ['eax', 'ebx', 'ecx', 'edx', 'esi', 'edi'],
    64: ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'],
}
REGS8_64 = ['al', 'bl', 'cl', 'dl', 'sil', 'dil', 'r8b', 'r9b', 'r10b', 'r11b', 'r12b', 'r13b', 'r14b', 'r15b']
PTR = {8: 'byte', 16: 'word', 32: 'dword', 64: 'qword'}
CCS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g']


class Gen:
    def __init__(self, seed, bits):
        self.r = random.Random(seed)
        self.bits = bits
        self.sizes = [8, 16, 32] + ([64] if bits == 64 else [])

    def reg(self, size):
        if size == 8 and self.bits == 64:
            return self.r.choice(REGS8_64)
        if size == 64:
            return self.r.choice(REGS[64])
        return self.r.choice(REGS[size])

    def mem(self, size):
        bp = {16: 'bp', 32: 'ebp', 64: 'rbp'}[self.bits]
        return '%s ptr [%s + %d]' % (PTR[size], bp, self.r.randrange(0, 0xF00))

    def imm(self, size):
        r = self.r
        v = r.choice([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, r.getrandbits(32)])
        return v & ((1 << min(size, 32)) - 1) if size < 64 else v & 0x7FFFFFFF

    def insn(self):
        r = self.r
        size = r.choice(self.sizes)
        a, b = self.reg(size), self.reg(size)
        if size == 8 and self.bits == 64 and (a in ('ah', 'bh', 'ch', 'dh') or b in ('ah', 'bh', 'ch', 'dh')):
            a, b = 'al', 'bl'
        k = r.randrange(22)
        if k < 4:
            op = r.choice(['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp'])
            und = AF if op in ('and', 'or', 'xor') else 0
            form = r.randrange(4)
            if form == 0:
                return '%s %s, %s' % (op, a, b), und
            if form == 1:
                return '%s %s, %d' % (op, a, self.imm(size)), und
            if form == 2:
                return '%s %s, %s' % (op, a, self.mem(size)), und
            return '%s %s, %s' % (op, self.mem(size), b), und
        if k == 4:
            op = r.choice(['inc', 'dec', 'neg', 'not'])
            return '%s %s' % (op, r.choice([a, self.mem(size)])), 0
        if k == 5:
            op = r.choice(['shl', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr'])
            c = r.choice([1, r.randrange(0, 64 if size == 64 else 32)])
            und = AF | (OF if c != 1 else 0)
            if op in ('rol', 'ror', 'rcl', 'rcr'):
                und = OF if c != 1 else 0
            if c == 0:
                und = 0
            if r.random() < 0.3:
                if a in ('cl', 'ch', 'cx', 'ecx', 'rcx'):
                    a = {8: 'bl', 16: 'bx', 32: 'ebx', 64: 'rbx'}[size]
                return 'mov cl, %d; %s %s, cl' % (c, op, a), und
            return '%s %s, %d' % (op, a, c), und
        if k == 6 and size > 8:
            op = r.choice(['shld', 'shrd'])
            c = r.randrange(1, size if size > 16 else 16)
            return '%s %s, %s, %d' % (op, a, b, c), (AF | (OF if c != 1 else 0))
        if k == 7 and size > 8:
            if r.random() < 0.5:
                return 'imul %s, %s' % (a, r.choice([b, self.mem(size)])), SF | ZF | AF | PF
            return 'imul %s, %s, %d' % (a, b, self.imm(16) - 0x8000), SF | ZF | AF | PF
        if k == 8:
            op = r.choice(['mul', 'imul'])
            return '%s %s' % (op, r.choice([b, self.mem(size)])), SF | ZF | AF | PF
        if k == 9 and size > 8:
            op = r.choice(['bt', 'bts', 'btr', 'btc'])
            if r.random() < 0.5:
                return '%s %s, %d' % (op, a, r.randrange(0, size)), ALL & ~CF
            return '%s %s, %s' % (op, a, b), ALL & ~CF
        if k == 10 and size > 8:
            op = r.choice(['bsf', 'bsr'])
            if self.bits == 64 and size == 32:
                # a zero source leaves the destination alone on AMD but clears its upper
                # half on Intel (the core does AMD's documented thing; unicorn Intel's):
                # keep the source nonzero, the one case where both agree
                return 'or %s, 1; %s %s, %s' % (b, op, a, b), ALL & ~ZF
            return '%s %s, %s' % (op, a, b), ALL & ~ZF
        if k == 11 and size > 8:
            if r.random() < 0.5:
                src = self.reg(8 if r.random() < 0.5 else 16) if size > 16 else self.reg(8)
                if self.bits == 64 and src in ('ah', 'bh', 'ch', 'dh'):
                    src = 'bl'
                return '%s %s, %s' % (r.choice(['movzx', 'movsx']), a, src), 0
            return 'lea %s, [%s + %s*%d + %d]' % (a, self.reg(self.bits if self.bits != 16 else 16),
                                                  self.reg(self.bits if self.bits != 16 else 16) if self.bits != 16 else 'si',
                                                  r.choice([1, 2, 4, 8]) if self.bits != 16 else 1,
                                                  r.randrange(-100, 100)) if self.bits != 16 else \
                'lea %s, [bx + si + %d]' % (a, r.randrange(-100, 100)), 0
        if k == 12:
            return 'mov %s, %s' % (a, r.choice([b, str(self.imm(size)), self.mem(size)])), 0
        if k == 13:
            return 'xchg %s, %s' % (a, r.choice([b, self.mem(size)])), 0
        if k == 14 and size > 8:
            return 'cmov%s %s, %s' % (r.choice(CCS), a, r.choice([b, self.mem(size)])), 0
        if k == 15:
            return 'set%s %s' % (r.choice(CCS), self.reg(8) if self.bits != 64 else r.choice(REGS8_64)), 0
        if k == 16:
            return r.choice(['clc', 'stc', 'cmc']), 0
        if k == 17 and size >= 32:
            return 'bswap %s' % a, 0
        if k == 18:
            conv = {16: ['cbw', 'cwd'], 32: ['cwde', 'cdq'], 64: ['cdqe', 'cqo']}
            return r.choice(conv.get(size, ['cbw'])), 0
        if k == 19:
            if r.random() < 0.5:
                return 'xadd %s, %s' % (r.choice([a, self.mem(size)]), b), 0
            # In 64-bit mode a failed 32-bit cmpxchg leaves a register destination alone on
            # AMD silicon but zero-extends it in QEMU/unicorn: use a memory destination there
            # (test_differential_cpl3 checks the register form against /dev/kvm).
            dst = self.mem(size) if self.bits == 64 and size == 32 else r.choice([a, self.mem(size)])
            return 'cmpxchg %s, %s' % (dst, b), 0
        if k == 20 and self.bits != 64:
            op = r.choice(['daa', 'das', 'aaa', 'aas', 'aam', 'aad'])
            und = {'daa': OF, 'das': OF, 'aaa': OF | SF | ZF | PF, 'aas': OF | SF | ZF | PF,
                   'aam': OF | AF | CF, 'aad': OF | AF | CF}[op]
            if op in ('aam', 'aad'):
                return '%s %d' % (op, r.randrange(1, 256)), und
            return op, und
        if k == 21:
            d = {8: ('div', 'ah'), 16: ('div', 'dx'), 32: ('div', 'edx'), 64: ('div', 'rdx')}
            if size == 8:
                return 'xor ah, ah; or bl, 1; div bl', ALL
            hi = d[size][1]
            bx = {16: 'bx', 32: 'ebx', 64: 'rbx'}[size]
            return 'xor %s, %s; or %s, 1; div %s' % (hi, hi, bx, bx), ALL
        return 'add %s, %s' % (a, b), 0

    def program(self, n, loop=False):
        """n instructions; with loop, the body runs in a counted loop (the counter is the
        first general register never written by the body: it lives in memory)."""
        body = []
        for _ in range(n):
            text, und = self.insn()
            body.append((text, und))
            if und:
                body.append(('add %s, %s' % (self.reg(32), self.reg(32)), 0))
        if loop:
            bp = {16: 'bp', 32: 'ebp', 64: 'rbp'}[self.bits]
            cnt = self.r.randrange(2, 20)
            pro = [('mov word ptr [%s + 0xff0], %d' % (bp, cnt), 0), ('top:', 0)]
            epi = [('dec word ptr [%s + 0xff0]' % bp, 0), ('jnz top', 0)]
            return pro + body + epi
        return body
