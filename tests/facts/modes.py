"""Protected- and long-mode setup for the fact tests (the layout of reference §8.3).

A flat GDT at 0x500 (null, code 0x08, data 0x10, TSS 0x18, 64-bit code 0x20), segment
registers loaded through KVM_SET_SREGS, and for long mode a 4-level identity map of the
first 4 GiB with 2 MiB pages at 0x10000.  (kvmlab.vmm will own the real version of this.)
"""
from __future__ import annotations

import struct

GDT_BASE = 0x500
PML4 = 0x10000

CR0_PE, CR0_ET, CR0_PG = 1, 0x10, 1 << 31
CR4_PAE = 0x20
EFER_LME, EFER_LMA = 0x100, 0x400


def _desc(base, limit, access, flags):
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), (base >> 24) & 0xFF)


def write_gdt(mem):
    gdt = b"".join([
        bytes(8),
        _desc(0, 0xFFFFF, 0x9B, 0xC),     # 0x08 code32 flat
        _desc(0, 0xFFFFF, 0x93, 0xC),     # 0x10 data flat
        _desc(0, 0x67, 0x8B, 0x0),        # 0x18 busy 32-bit TSS
        _desc(0, 0xFFFFF, 0x9B, 0xA),     # 0x20 code64
    ])
    mem.write(GDT_BASE, gdt)
    return len(gdt) - 1


def _seg(s, *, selector, type_, base=0, limit=0xFFFFFFFF, db=1, l=0, g=1, s_=1, present=1):
    s.base, s.limit, s.selector, s.type = base, limit, selector, type_
    s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable = present, 0, db, s_, l, g, 0, 0


def _common(vcpu, mem, idt):
    limit = write_gdt(mem)
    sr = vcpu.get_sregs()
    for seg in (sr.ds, sr.es, sr.fs, sr.gs, sr.ss):
        _seg(seg, selector=0x10, type_=0x3)
    _seg(sr.tr, selector=0x18, type_=0xB, limit=0x67, db=0, g=0, s_=0)
    _seg(sr.ldt, selector=0, type_=0x2, limit=0, db=0, g=0, s_=0, present=0)
    sr.ldt.unusable = 1
    sr.gdt.base, sr.gdt.limit = GDT_BASE, limit
    sr.idt.base, sr.idt.limit = idt
    return sr


def set_protected_flat(vcpu, mem, rip, rsp=0x8000, idt=(0, 0)):
    """32-bit protected mode, flat 4 GiB segments, no paging (cr0 = PE|ET)."""
    sr = _common(vcpu, mem, idt)
    _seg(sr.cs, selector=0x08, type_=0xB)
    sr.cr0, sr.cr4, sr.efer = CR0_PE | CR0_ET, 0, 0
    vcpu.set_sregs(sr)
    vcpu.set_regs(rip=rip, rsp=rsp, rflags=2)


def build_identity_map(mem, pml4=PML4, gib=4):
    """Identity map [0, gib GiB) with 2 MiB pages; page tables at pml4.. (needs
    pml4 + (gib+2)*4 KiB of RAM).  Returns cr3."""
    pdpt = pml4 + 0x1000
    q = mem.view("<u8")
    q[pml4 // 8] = pdpt | 0x3
    for g in range(gib):
        pd = pdpt + 0x1000 * (g + 1)
        q[pdpt // 8 + g] = pd | 0x3
        for i in range(512):
            q[pd // 8 + i] = ((g << 30) + (i << 21)) | 0x83   # P | RW | PS
    return pml4


def set_long_mode(vcpu, mem, rip, cr3, rsp=0x8000, idt=(0, 0)):
    """64-bit long mode: cr0 = PG|PE|ET, cr4 = PAE, efer = LME|LMA, cs.l = 1."""
    sr = _common(vcpu, mem, idt)
    _seg(sr.cs, selector=0x20, type_=0xB, db=0, l=1)
    sr.cr0, sr.cr3, sr.cr4, sr.efer = CR0_PG | CR0_PE | CR0_ET, cr3, CR4_PAE, EFER_LME | EFER_LMA
    vcpu.set_sregs(sr)
    vcpu.set_regs(rip=rip, rsp=rsp, rflags=2)


def protected_guest(vm, source, *, mem_size=0x100000, load=0x1000, idt=(0, 0), cr4=0):
    """VM with RAM [0, mem_size) in slot 0 and vCPU 0 in flat 32-bit protected mode at ``load``."""
    import kvmlab
    from kvmlab.asm import assemble
    mem = kvmlab.GuestMemory(mem_size)
    vm.set_user_memory_region(0, 0, mem)
    prog = assemble(".code32\n" + source, base=load)
    mem.write(load, prog.code)
    vcpu = vm.create_vcpu(0)
    set_protected_flat(vcpu, mem, load, idt=idt)
    if cr4:
        sr = vcpu.get_sregs()
        sr.cr4 |= cr4
        vcpu.set_sregs(sr)
    return mem, vcpu, prog


def long_guest(vm, source, *, mem_size=0x200000, load=0x1000, idt=(0, 0), cr4=0, gib=1):
    """VM with RAM [0, mem_size) in slot 0, an identity map of the first ``gib`` GiB, and
    vCPU 0 in 64-bit mode at ``load``."""
    import kvmlab
    from kvmlab.asm import assemble
    mem = kvmlab.GuestMemory(mem_size)
    vm.set_user_memory_region(0, 0, mem)
    cr3 = build_identity_map(mem, gib=gib)
    prog = assemble(".code64\n" + source, base=load)
    mem.write(load, prog.code)
    vcpu = vm.create_vcpu(0)
    set_long_mode(vcpu, mem, load, cr3, idt=idt)
    if cr4:
        sr = vcpu.get_sregs()
        sr.cr4 |= cr4
        vcpu.set_sregs(sr)
    return mem, vcpu, prog
