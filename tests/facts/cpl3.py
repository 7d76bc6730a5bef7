"""A long-mode guest whose test code runs at CPL 3 (or 0), with an IDT whose handlers run at CPL 0.

Reference §19: on this host's KVM (PVM) 64-bit code at CPL 3 runs natively on the CPU
(under KVM's shadow paging), so what that code does is a hardware fact there; CPL 0 code
(the handlers) is run by KVM's instruction emulator.

Layout (4 MiB of RAM at 0)::

    0x0500  GDT: 0x08 code64 DPL0, 0x10 data DPL0, 0x18 code64 DPL3, 0x20 data DPL3,
                 0x28 64-bit TSS (16 bytes)
    0x1000  the CPL 3 code (``source``), 0x2000 IDT (32 gates), 0x3000 64-bit TSS
            (RSP0 0x9000, I/O bitmap base at 0x66), 0x4000 handlers,
    0x8000  user stack top, 0x9000 kernel stack top,
    0x10000 PML4, 0x11000 PDPT, 0x12000 PD, 0x13000 PT: PT maps [0, 2 MiB) with 4 KiB
            pages, PD[1] [2, 4) MiB with a 2 MiB page, all user + writable.

Every handler stores its vector in r15, pops the error code into r14 for the vectors
that push one, copies CR2 into r13, the exception frame's RIP into r12 and its RFLAGS
into r11, then ``hlt``.  With ``db_resume`` the #DB handler instead counts in r10, copies
DR6 to r9, the frame's RIP/RFLAGS to r12/r11, sets RF in the frame and returns (IRETQ).
"""
from __future__ import annotations

import struct

import kvmlab
from kvmlab.asm import assemble

GDT, IDT, TSS, HANDLERS, CODE = 0x500, 0x2000, 0x3000, 0x4000, 0x1000
USER_STACK, KERNEL_STACK = 0x8000, 0x9000
PML4, PDPT, PD, PT = 0x10000, 0x11000, 0x12000, 0x13000
P, RW, US, PS = 1, 2, 4, 0x80
ERR_VECTORS = (8, 10, 11, 12, 13, 14, 17)


def _desc(access, flags):
    return struct.pack("<HHBBBB", 0xFFFF, 0, 0, access, 0xF | (flags << 4), 0)


def _handlers(db_resume=False) -> bytes:
    src = [".code64"]
    for v in range(32):
        src.append(f"h{v}:")
        if v == 1 and db_resume:             # count, record DR6, set RF in the frame, return
            src += ["  inc r10", "  mov r9, dr6", "  mov r12, [rsp]", "  mov r11, [rsp + 16]",
                    "  or qword ptr [rsp + 16], 0x10000", "  iretq"]
            continue
        src.append(f"  mov r15, {v}")
        if v in ERR_VECTORS:
            src.append("  pop r14")
        src += ["  mov r13, cr2", "  mov r12, [rsp]", "  mov r11, [rsp + 16]", "  hlt", "  jmp .-1"]
    return assemble("\n".join(src), base=HANDLERS)


class Cpl3Guest:
    def __init__(self, vm, source: str, *, cpuid=None, efer_nxe=False, tss_extra: bytes = b"",
                 tss_limit: int = 0x67, cpl: int = 3, db_resume: bool = False, gdt_extra: bytes = b""):
        self.vm = vm
        self.mem = mem = kvmlab.GuestMemory(4 << 20)
        vm.set_user_memory_region(0, 0, mem)
        gdt = bytes(8) + _desc(0x9B, 0xA) + _desc(0x93, 0xC) + _desc(0xFB, 0xA) + _desc(0xF3, 0xC)
        gdt += struct.pack("<HHBBBBII", tss_limit & 0xFFFF, TSS & 0xFFFF, (TSS >> 16) & 0xFF, 0x8B,
                           (tss_limit >> 16) & 0xF, 0, 0, 0)
        gdt += gdt_extra                        # from selector 0x38
        mem.write(GDT, gdt)
        h = _handlers(db_resume)
        mem.write(HANDLERS, h.code)
        idt = b""
        for v in range(32):
            off = h.symbols[f"h{v}"]
            idt += struct.pack("<HHBBHII", off & 0xFFFF, 0x08, 0, 0x8E, (off >> 16) & 0xFFFF, off >> 32, 0)
        mem.write(IDT, idt)
        tss = bytearray(0x68)
        struct.pack_into("<Q", tss, 4, KERNEL_STACK)          # RSP0
        struct.pack_into("<H", tss, 0x66, 0x68)               # I/O map base: none
        mem.write(TSS, bytes(tss) + tss_extra)
        q = mem.view("<u8")
        q[PML4 // 8] = PDPT | P | RW | US
        q[PDPT // 8] = PD | P | RW | US
        q[PD // 8] = PT | P | RW | US
        q[PD // 8 + 1] = 0x200000 | P | RW | US | PS
        for i in range(512):
            q[PT // 8 + i] = (i << 12) | P | RW | US
        self.q = q
        self.prog = assemble(".code64\n" + source, base=CODE)
        mem.write(CODE, self.prog.code)
        self.vcpu = v = vm.create_vcpu(0)
        if cpuid is not None:
            v.set_cpuid2(cpuid)
        s = v.get_sregs()

        def seg(r, sel, type_, dpl, l=0, db=1, s_=1, base=0, limit=0xFFFFFFFF, g=1):
            r.base, r.limit, r.selector, r.type = base, limit, sel, type_
            r.present, r.dpl, r.db, r.s, r.l, r.g, r.avl, r.unusable = 1, dpl, db, s_, l, g, 0, 0
        if cpl == 3:
            seg(s.cs, 0x18 | 3, 0xB, 3, l=1, db=0)
            for r in (s.ds, s.es, s.fs, s.gs, s.ss):
                seg(r, 0x20 | 3, 0x3, 3)
        else:                                   # CPL 0 (run by KVM's emulator here, §19)
            seg(s.cs, 0x08, 0xB, 0, l=1, db=0)
            for r in (s.ds, s.es, s.fs, s.gs, s.ss):
                seg(r, 0x10, 0x3, 0)
        seg(s.tr, 0x28, 0xB, 0, db=0, s_=0, base=TSS, limit=tss_limit, g=0)
        seg(s.ldt, 0, 0x2, 0, db=0, s_=0, limit=0, g=0)
        s.ldt.present, s.ldt.unusable = 0, 1
        s.gdt.base, s.gdt.limit = GDT, len(gdt) - 1
        s.idt.base, s.idt.limit = IDT, 32 * 16 - 1
        s.cr0, s.cr3, s.cr4 = 0x80000011, PML4, 0x20
        s.efer = 0x500 | (0x800 if efer_nxe else 0)
        v.set_sregs(s)
        v.set_regs(rip=CODE, rsp=USER_STACK, rflags=2)

    def sym(self, name):
        return self.prog.symbols[name]

    def pte(self, va):
        return PT // 8 + ((va >> 12) & 511)

    def run(self, **kw):
        from factkit import run_until
        return run_until(self.vcpu, **kw)

    def outcome(self):
        """(vector, error code, CR2, faulting RIP, RFLAGS pushed) after a handler ran."""
        r = self.vcpu.get_regs()
        return r.r15, r.r14, r.r13, r.r12, r.r11


def supported_cpuid(kvm, *, gbpages=None):
    """The backend's supported CPUID, with CPUID 0x80000001 EDX.Page1GB forced when given."""
    out = []
    for e in kvm.get_supported_cpuid():
        if e.function == 0x80000001 and gbpages is not None:
            e.edx = (e.edx | (1 << 26)) if gbpages else (e.edx & ~(1 << 26))
        out.append(e)
    return out


def maxphyaddr(entries) -> int:
    top = next((e.eax for e in entries if e.function == 0x80000000), 0)
    if top < 0x80000008:
        return 36
    return next((e.eax & 0xFF for e in entries if e.function == 0x80000008), 36)
