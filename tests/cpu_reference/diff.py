"""Run one program on kvmlab.cpu and on unicorn in the same mode and compare."""
import random

import numpy as np
from unicorn import Uc, UcError, UC_ARCH_X86, UC_MODE_16, UC_MODE_32, UC_MODE_64
from unicorn import x86_const as U

from kvmlab.cpu import EXIT_HLT
from kvmlab.cpu import layout as L
from tests.cpu_reference.machine import Machine, asm, CODE

DATA = {16: 0x3000, 32: 0x300000, 64: 0x300000}
CODE_AT = {16: 0x1000, 32: CODE, 64: CODE}
STACK_AT = {16: 0x8000, 32: 0x90000, 64: 0x90000}
UREG = [U.UC_X86_REG_RAX, U.UC_X86_REG_RCX, U.UC_X86_REG_RDX, U.UC_X86_REG_RBX, U.UC_X86_REG_RSP,
        U.UC_X86_REG_RBP, U.UC_X86_REG_RSI, U.UC_X86_REG_RDI] + \
    [getattr(U, 'UC_X86_REG_R%d' % i) for i in range(8, 16)]
UREG32 = [U.UC_X86_REG_EAX, U.UC_X86_REG_ECX, U.UC_X86_REG_EDX, U.UC_X86_REG_EBX, U.UC_X86_REG_ESP,
          U.UC_X86_REG_EBP, U.UC_X86_REG_ESI, U.UC_X86_REG_EDI]


class Pair:
    """A core and a unicorn instance for one mode, reused across programs."""

    def __init__(self, bits):
        self.bits = bits
        self.m = Machine(mem_size=0x400000)
        if bits == 64:
            self.m.setup('long', paging='4level-2m')
        elif bits == 32:
            self.m.setup('prot32')
        else:
            core = self.m.core
            s = core.get_sregs()
            s.cs.base, s.cs.selector = 0, 0
            core.set_sregs(s)
        self.sregs = self.m.core.get_sregs()
        self.uc = Uc(UC_ARCH_X86, {16: UC_MODE_16, 32: UC_MODE_32, 64: UC_MODE_64}[bits])
        self.uc.mem_map(0, 0x400000)

    def run(self, text, seed):
        bits = self.bits
        code = asm(text, bits, CODE_AT[bits]) + b'\xf4'
        rng = random.Random(seed)
        regs = [rng.getrandbits(64 if bits == 64 else 32) for _ in range(16)]
        if bits != 64:
            regs = regs[:8] + [0] * 8
        regs[L.RSP] = STACK_AT[bits]
        regs[L.RBP] = DATA[bits]
        flags = 2 | rng.choice([0, 0x8D5, rng.getrandbits(12) & 0x8D5])
        data = bytes(rng.getrandbits(8) for _ in range(0x1000))
        # core
        m = self.m
        core = m.core
        m.write(CODE_AT[bits], code)
        m.write(DATA[bits], data)
        m.mem[STACK_AT[bits] - 0x100:STACK_AT[bits]] = 0
        st = core.state
        core.set_sregs(self.sregs)
        for i in range(16):
            st[i] = regs[i] - (1 << 64) if regs[i] >> 63 else regs[i]
        st[L.RIP] = CODE_AT[bits]
        st[L.RFLAGS] = flags
        st[L.PM_GEN_SEEN] = -1
        ccode = core.run(200000)
        # unicorn
        uc = self.uc
        uc.mem_write(CODE_AT[bits], code)
        uc.mem_write(DATA[bits], data)
        uc.mem_write(STACK_AT[bits] - 0x100, b'\0' * 0x100)
        if bits == 64:
            for i in range(16):
                uc.reg_write(UREG[i], regs[i])
        else:
            for i in range(8):
                uc.reg_write(UREG32[i], regs[i])
        uc.reg_write(U.UC_X86_REG_EFLAGS, flags)
        err = None
        try:
            uc.emu_start(CODE_AT[bits], CODE_AT[bits] + len(code) - 1, count=200000)
        except UcError as e:
            err = e
        return ccode, err, code

    def compare(self, und=0):
        """Differences between the two final states (registers, flags under ~und, data page)."""
        bits = self.bits
        st = self.m.core.state
        out = []
        n = 16 if bits == 64 else 8
        mask = (1 << 64) - 1 if bits == 64 else 0xFFFFFFFF
        for i in range(n):
            u = self.uc.reg_read(UREG[i] if bits == 64 else UREG32[i]) & mask
            c = int(st[i]) & mask
            if u != c:
                out.append('r%d core %x unicorn %x' % (i, c, u))
        uf = self.uc.reg_read(U.UC_X86_REG_EFLAGS) & 0x8D5 & ~und
        cf = int(st[L.RFLAGS]) & 0x8D5 & ~und
        if uf != cf:
            out.append('flags core %03x unicorn %03x (undefined %03x)' % (cf, uf, und))
        ud = bytes(self.uc.mem_read(DATA[bits], 0x1000))
        cd = self.m.read(DATA[bits], 0x1000)
        if ud != cd:
            k = next(i for i in range(0x1000) if ud[i] != cd[i])
            out.append('data differs at +%x: core %02x unicorn %02x' % (k, cd[k], ud[k]))
        return out
