"""IN/OUT/INS/OUTS at CPL > IOPL consult the TSS I/O permission bitmap.

The bitmap starts at the 16-bit offset stored at TSS+0x66; port p is allowed when bit p%8
of byte p/8 is clear, for every port of a multi-byte access; a bitmap byte beyond the TSS
limit means #GP(0) (KVM's emulator_io_port_access_allowed checks only the first of the two
bytes it reads).  Long mode with a 64-bit TSS: CPL 3 code (run natively here, §19, the #GP
then handled by KVM); 32-bit protected mode with a 32-bit TSS: CPL 3 code run by KVM's
emulator here, without an IDT (a #GP becomes a triple fault: SHUTDOWN).
"""
import struct

import pytest

import cpl3
import kvmlab
from kvmlab.asm import assemble
from factkit import run_until

GP, UD = 13, 6
BASE = 0x68


def bitmap(allowed, nbytes=0x11, tail=True):
    """Bytes of a bitmap covering ports [0, 8*nbytes) with only ``allowed`` clear (+ 0xFF)."""
    b = bytearray(b"\xff" * nbytes)
    for p in allowed:
        b[p >> 3] &= ~(1 << (p & 7))
    return bytes(b) + (b"\xff" if tail else b"")


CASES = [   # id, code (the I/O instruction last), allowed ports, bitmap bytes, TSS limit - 0x68,
            # want: (direction, port, size) or "GP"
    ("out-allowed", "out 0x80, al", [0x80], 0x11, 0x11, ("out", 0x80, 1)),
    ("in-allowed", "in al, 0x80", [0x80], 0x11, 0x11, ("in", 0x80, 1)),
    ("out-denied", "out 0x81, al", [0x80], 0x11, 0x11, "GP"),
    ("word-one-port-denied", "mov dx, 0x7f\n out dx, ax", [0x80], 0x11, 0x11, "GP"),
    ("word-allowed", "mov dx, 0x80\n out dx, ax", [0x80, 0x81], 0x11, 0x11, ("out", 0x80, 2)),
    ("dword-half-denied", "mov dx, 0x80\n out dx, eax", [0x80, 0x81], 0x11, 0x11, "GP"),
    ("word-across-bytes", "mov dx, 0x87\n in ax, dx", [0x87, 0x88], 0x12, 0x12, ("in", 0x87, 2)),
    ("second-byte-beyond-limit", "out 0x80, al", [0x80], 0x11, 0x10, ("out", 0x80, 1)),
    ("first-byte-beyond-limit", "out 0x80, al", [0x80], 0x11, 0x0F, "GP"),
    ("outsb-allowed", "mov dx, 0x80\n outsb", [0x80], 0x11, 0x11, ("out", 0x80, 1)),
    ("insb-denied", "mov dx, 0x81\n insb", [0x80], 0x11, 0x11, "GP"),
    ("no-bitmap", "out 0x80, al", [0x80], 0, 0, "GP"),
]
IDS = [c[0] for c in CASES]


def _io(exits):
    ex = exits[0]
    return (ex[1], ex[2], ex[3]) if ex[0] == "IO" else ex[0]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_64_bit_tss_io_bitmap_at_cpl3(kvm, vm, case):
    _, code, allowed, nbytes, lim, want = case
    *pre, insn = code.split("\n")
    src = "mov rsi, 0x1000\n mov rdi, 0x100000\n" + "\n".join(pre) + "\nio: " + insn + "\n ud2"
    g = cpl3.Cpl3Guest(vm, src, cpuid=cpl3.supported_cpuid(kvm),
                       tss_extra=bitmap(allowed, nbytes, tail=False) + b"\xff" if nbytes else b"",
                       tss_limit=BASE + lim if nbytes else 0x67)
    exits = g.run()
    vec, err, _, rip, _ = g.outcome()
    if want == "GP":
        assert exits == [("HLT",)] and (vec, err) == (GP, 0)
        assert rip == g.sym("io")
    else:
        assert _io(exits) == want and vec == UD


def _desc(base, limit, access, flags):
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
                       ((limit >> 16) & 0xF) | (flags << 4), (base >> 24) & 0xFF)


def _protected_cpl3(vm, code, tss_extra, tss_limit):
    """32-bit protected mode at CPL 3 (flat DPL 3 segments), 32-bit TSS at 0x3000, no IDT."""
    mem = kvmlab.GuestMemory(0x200000)
    vm.set_user_memory_region(0, 0, mem)
    tss = 0x3000
    gdt = bytes(8) + _desc(0, 0xFFFFF, 0x9B, 0xC) + _desc(0, 0xFFFFF, 0x93, 0xC) + \
        _desc(0, 0xFFFFF, 0xFB, 0xC) + _desc(0, 0xFFFFF, 0xF3, 0xC) + _desc(tss, tss_limit, 0x8B, 0)
    mem.write(0x500, gdt)
    t = bytearray(0x68)
    struct.pack_into("<IH", t, 4, 0x9000, 0x10)
    struct.pack_into("<H", t, 0x66, BASE)
    mem.write(tss, bytes(t) + tss_extra)
    prog = assemble(".code32\n mov esi, 0x1000\n mov edi, 0x100000\n" + code + "\n hlt", base=0x1000)
    mem.write(0x1000, prog.code)
    v = vm.create_vcpu(0)
    s = v.get_sregs()

    def seg(r, sel, type_, dpl, s_=1, base=0, limit=0xFFFFFFFF, g=1, db=1):
        r.base, r.limit, r.selector, r.type = base, limit, sel, type_
        r.present, r.dpl, r.db, r.s, r.l, r.g, r.avl, r.unusable = 1, dpl, db, s_, 0, g, 0, 0
    seg(s.cs, 0x18 | 3, 0xB, 3)
    for r in (s.ds, s.es, s.fs, s.gs, s.ss):
        seg(r, 0x20 | 3, 0x3, 3)
    seg(s.tr, 0x28, 0xB, 0, s_=0, base=tss, limit=tss_limit, g=0, db=0)
    seg(s.ldt, 0, 0x2, 0, s_=0, limit=0, g=0, db=0)
    s.ldt.present, s.ldt.unusable = 0, 1
    s.gdt.base, s.gdt.limit = 0x500, len(gdt) - 1
    s.idt.base, s.idt.limit = 0, 0
    s.cr0, s.cr4, s.efer = 0x11, 0, 0
    v.set_sregs(s)
    v.set_regs(rip=0x1000, rsp=0x8000, rflags=2)
    return v


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_32_bit_tss_io_bitmap_at_cpl3(kvm, vm, case):
    _, code, allowed, nbytes, lim, want = case
    v = _protected_cpl3(vm, code, bitmap(allowed, nbytes, tail=False) + b"\xff" if nbytes else b"",
                        BASE + lim if nbytes else 0x67)
    exits = run_until(v)
    if want == "GP":
        assert exits == [("SHUTDOWN",)]          # #GP without an IDT: triple fault
    else:
        assert _io(exits) == want


def test_at_cpl_at_most_iopl_the_bitmap_is_not_read(kvm, vm):
    v = _protected_cpl3(vm, "out 0x81, al", b"", 0x67)     # no bitmap at all
    r = v.get_regs()
    v.set_regs(rip=r.rip, rsp=r.rsp, rflags=2 | (3 << 12))
    assert _io(run_until(v)) == ("out", 0x81, 1)
