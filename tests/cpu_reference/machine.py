"""Test machines for kvmlab.cpu: memory, a GDT/IDT/TSS, page tables in each format, and
register setup the way a VMM does it (set_sregs), plus keystone assembly."""
import struct

import numpy as np
from keystone import Ks, KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64

from kvmlab.cpu import Core, PhysMap

GDT, IDT, TSS, PT = 0x1000, 0x2000, 0x3000, 0x10000
CODE = 0x100000
STACK = 0x90000
SEL_CODE32, SEL_DATA, SEL_CODE64, SEL_CODE16 = 0x08, 0x10, 0x18, 0x20
SEL_UCODE32, SEL_UDATA, SEL_UCODE64, SEL_TSS = 0x2B, 0x33, 0x3B, 0x40


def asm(src, bits, addr=0):
    ks = Ks(KS_ARCH_X86, {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}[bits])
    enc, _ = ks.asm(src, addr)
    return bytes(enc)


def desc(base, limit, typ, s=1, dpl=0, p=1, l=0, db=1, g=1):
    if g:
        limit >>= 12
    lo = (limit & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (typ << 8) | (s << 12) | (dpl << 13) | (p << 15) \
        | (limit & 0xF0000) | (l << 21) | (db << 22) | (g << 23) | (base & 0xFF000000)
    return struct.pack('<II', lo, hi)


class Machine:
    def __init__(self, mem_size=0x400000):
        self.mem = np.zeros(mem_size, np.uint8)
        self.pm = PhysMap()
        self.pm.set_slot(0, 0, self.mem)
        self.core = Core(self.pm)
        self.next_pt = PT

    # ---- memory helpers ----
    def write(self, addr, data):
        self.mem[addr:addr + len(data)] = np.frombuffer(bytes(data), np.uint8)

    def read(self, addr, n):
        return bytes(self.mem[addr:addr + n])

    def q(self, addr):
        return struct.unpack_from('<Q', self.mem, addr)[0]

    def d(self, addr):
        return struct.unpack_from('<I', self.mem, addr)[0]

    def alloc_pt(self):
        a = self.next_pt
        self.next_pt += 0x1000
        self.mem[a:a + 0x1000] = 0
        return a

    # ---- descriptor tables ----
    def build_gdt(self):
        g = b''.join([
            b'\0' * 8,
            desc(0, 0xFFFFFFFF, 0xB),                      # 0x08 code32
            desc(0, 0xFFFFFFFF, 0x3),                      # 0x10 data
            desc(0, 0xFFFFFFFF, 0xB, l=1, db=0),           # 0x18 code64
            desc(0, 0xFFFF, 0xB, db=0, g=0),               # 0x20 code16
            desc(0, 0xFFFFFFFF, 0xB, dpl=3),               # 0x28 user code32
            desc(0, 0xFFFFFFFF, 0x3, dpl=3),               # 0x30 user data
            desc(0, 0xFFFFFFFF, 0xB, dpl=3, l=1, db=0),    # 0x38 user code64
            desc(TSS, 0x67, 0x9, s=0, db=0, g=0),          # 0x40 TSS (16 bytes in long mode)
            b'\0' * 8,
        ])
        self.write(GDT, g)
        return len(g) - 1

    def set_idt_gate(self, vec, handler, long_mode, sel=None, dpl=0, ist=0, trap=False):
        typ = 0xF if trap else 0xE
        if long_mode:
            sel = SEL_CODE64 if sel is None else sel
            e = struct.pack('<HHBBHIi', handler & 0xFFFF, sel, ist, typ | (dpl << 5) | 0x80,
                            (handler >> 16) & 0xFFFF, (handler >> 32) & 0xFFFFFFFF, 0)
            self.write(IDT + 16 * vec, e)
        else:
            sel = SEL_CODE32 if sel is None else sel
            e = struct.pack('<HHBBH', handler & 0xFFFF, sel, 0, typ | (dpl << 5) | 0x80,
                            (handler >> 16) & 0xFFFF)
            self.write(IDT + 8 * vec, e)

    # ---- page tables ----
    def map_identity(self, fmt, size=0x400000, flags=0x7):
        """Identity-map [0, size) with format '32', '32pse', 'pae', '4level', '4level-2m',
        '4level-1g'.  Returns CR3."""
        if fmt in ('32', '32pse'):
            pd = self.alloc_pt()
            if fmt == '32pse':
                for i in range(0, size, 0x400000):
                    struct.pack_into('<I', self.mem, pd + 4 * (i >> 22), i | flags | 0x80)
            else:
                for i in range(0, size, 0x1000):
                    di = i >> 22
                    pde = self.d(pd + 4 * di)
                    if not pde & 1:
                        pt = self.alloc_pt()
                        struct.pack_into('<I', self.mem, pd + 4 * di, pt | flags)
                        pde = pt | flags
                    struct.pack_into('<I', self.mem, (pde & ~0xFFF) + 4 * ((i >> 12) & 0x3FF), i | flags)
            return pd
        if fmt == 'pae':
            pdpt = self.alloc_pt()
            for i in range(0, size, 0x1000):
                pi = (i >> 30) & 3
                e = self.q(pdpt + 8 * pi)
                if not e & 1:
                    e = self.alloc_pt() | 1
                    struct.pack_into('<Q', self.mem, pdpt + 8 * pi, e)
                pd = e & ~0xFFF
                e2 = self.q(pd + 8 * ((i >> 21) & 0x1FF))
                if not e2 & 1:
                    e2 = self.alloc_pt() | flags
                    struct.pack_into('<Q', self.mem, pd + 8 * ((i >> 21) & 0x1FF), e2)
                struct.pack_into('<Q', self.mem, (e2 & ~0xFFF) + 8 * ((i >> 12) & 0x1FF), i | flags)
            return pdpt
        pml4 = self.alloc_pt()
        step = {'4level': 0x1000, '4level-2m': 0x200000, '4level-1g': 0x40000000}[fmt]
        leaf_level = {'4level': 1, '4level-2m': 2, '4level-1g': 3}[fmt]
        for i in range(0, max(size, step), step):
            t = pml4
            for level in (4, 3, 2, 1):
                idx = (i >> (12 + 9 * (level - 1))) & 0x1FF
                if level == leaf_level:
                    struct.pack_into('<Q', self.mem, t + 8 * idx, i | flags | (0x80 if level > 1 else 0))
                    break
                e = self.q(t + 8 * idx)
                if not e & 1:
                    e = self.alloc_pt() | flags
                    struct.pack_into('<Q', self.mem, t + 8 * idx, e)
                t = e & ~0xFFF
        return pml4

    # ---- CPU setup (as a VMM does with SET_SREGS) ----
    def setup(self, mode, paging=None, cpl=0, cr4_extra=0, efer_extra=0):
        core = self.core
        gdt_limit = self.build_gdt()
        s = core.get_sregs()
        s.gdt.base, s.gdt.limit = GDT, gdt_limit
        s.idt.base, s.idt.limit = IDT, (0xFFF if mode == 'long' else 0x7FF)
        cr3 = 0
        cr4 = cr4_extra
        if paging:
            cr3 = self.map_identity(paging)
            if paging == '32pse':
                cr4 |= 0x10
            if paging == 'pae' or paging.startswith('4level'):
                cr4 |= 0x20
        long_mode = mode == 'long'

        def seg(x, sel, typ, l=0, db=1, dpl=0, s_=1, limit=0xFFFFFFFF, base=0, g=1):
            x.base, x.limit, x.selector, x.type, x.present = base, limit, sel, typ, 1
            x.dpl, x.db, x.s, x.l, x.g, x.avl, x.unusable = dpl, db, s_, l, g, 0, 0
        if long_mode:
            seg(s.cs, SEL_UCODE64 if cpl == 3 else SEL_CODE64, 0xB, l=1, db=0, dpl=cpl)
        else:
            seg(s.cs, SEL_UCODE32 if cpl == 3 else SEL_CODE32, 0xB, dpl=cpl)
        for x in (s.ds, s.es, s.fs, s.gs, s.ss):
            seg(x, SEL_UDATA if cpl == 3 else SEL_DATA, 0x3, dpl=cpl)
        seg(s.tr, SEL_TSS, 0xB, s_=0, db=0, limit=0x67, base=TSS, g=0)
        s.cr0 = 0x80000011 if paging else 0x11
        s.cr3, s.cr4 = cr3, cr4
        s.efer = (0x500 if long_mode else 0) | efer_extra
        core.set_sregs(s)
        r = core.get_regs()
        r.rip, r.rsp, r.rflags = CODE, STACK, 2 | (0x3000 if cpl == 3 else 0)
        core.set_regs(r)
        return cr3

    def load(self, src, bits, addr=CODE):
        code = asm(src, bits, addr)
        self.write(addr, code)
        return code

    def run_to_exit(self, budget=100000):
        return self.core.run(budget)
