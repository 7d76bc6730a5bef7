"""CPU mode setup: the flat GDT, the TSS, 4-level identity page tables, and the
KVM_SET_SREGS values for real, 32-bit protected and 64-bit long mode.

A CPU in protected mode keeps a hidden copy ("segment cache") of each segment
descriptor it loaded.  KVM_SET_SREGS sets those caches directly, so a VMM can start a
vCPU in protected or long mode without running any mode-switch code -- but the caches
should match real descriptors in the GDT, or the first segment load the guest does
(``mov ds, ax``, an interrupt, ``iret``) changes them.  Here both come from one
:class:`Segment` description, so they match by construction.

Guest-physical layout used by the Machine (all modes; the guest image goes at 0x1000):

==================  ===============================================================
0x00000-0x003FF     real-mode IVT (left to the guest)
0x00500-0x0052F     GDT: 0x08 code32, 0x10 data, 0x18 code64, 0x20 TSS (16 bytes)
0x00580-0x005E7     TSS (zeros)
0x10000-...         long mode: PML4 0x10000, PDPT 0x11000, PDs from 0x12000
                    (identity map of the first ``gib`` GiB with 2 MiB pages)
==================  ===============================================================

>>> s = Segment(selector=0x08, type=0xB, db=1)     # flat 32-bit code
>>> hex(s.descriptor())
'0xcf9b000000ffff'
>>> Segment.from_descriptor(0x08, s.descriptor()) == s
True
"""
from __future__ import annotations

import struct
from dataclasses import asdict, dataclass

from .. import uapi

GDT_BASE = 0x500
SEL_CODE32 = 0x08
SEL_DATA = 0x10
SEL_CODE64 = 0x18
SEL_TSS = 0x20
GDT_LIMIT = 0x2F            # 4 descriptors of 8 bytes + a 16-byte TSS descriptor, minus 1
TSS_BASE = 0x580
TSS_LIMIT = 0x67
PML4_BASE = 0x10000

CR0_PE = 1 << 0
CR0_ET = 1 << 4
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LME = 1 << 8
EFER_LMA = 1 << 10

PTE_P = 1 << 0
PTE_RW = 1 << 1
PTE_PS = 1 << 7

MODES = ("real", "protected", "long")


@dataclass(frozen=True)
class Segment:
    """A segment register's hidden cache (``struct kvm_segment``), and the GDT
    descriptor that produces it.  Defaults: flat 4 GiB, present, ring 0, 4 KiB granular."""
    base: int = 0
    limit: int = 0xFFFFFFFF
    selector: int = 0
    type: int = 0x3
    present: int = 1
    dpl: int = 0
    db: int = 1
    s: int = 1
    l: int = 0  # noqa: E741  (the kernel's field name)
    g: int = 1
    avl: int = 0
    unusable: int = 0

    def descriptor(self) -> int:
        """The 8-byte GDT descriptor (for a system segment in long mode, the low half)."""
        limit = self.limit >> 12 if self.g else self.limit
        access = self.type | self.s << 4 | self.dpl << 5 | self.present << 7
        flags = self.avl | self.l << 1 | self.db << 2 | self.g << 3
        return ((limit & 0xFFFF) | (self.base & 0xFFFFFF) << 16 | access << 40
                | ((limit >> 16) & 0xF) << 48 | flags << 52 | ((self.base >> 24) & 0xFF) << 56)

    @classmethod
    def from_descriptor(cls, selector: int, desc: int, high: int = 0) -> "Segment":
        """Decode a descriptor as the CPU does when it loads ``selector``."""
        limit = (desc & 0xFFFF) | ((desc >> 48) & 0xF) << 16
        base = ((desc >> 16) & 0xFFFFFF) | ((desc >> 56) & 0xFF) << 24 | (high & 0xFFFFFFFF) << 32
        access = (desc >> 40) & 0xFF
        flags = (desc >> 52) & 0xF
        g = flags >> 3 & 1
        return cls(base=base, limit=(limit << 12 | 0xFFF) if g else limit, selector=selector,
                   type=access & 0xF, s=access >> 4 & 1, dpl=access >> 5 & 3, present=access >> 7,
                   avl=flags & 1, l=flags >> 1 & 1, db=flags >> 2 & 1, g=g)

    def to_kvm(self) -> uapi.kvm_segment:
        return uapi.kvm_segment(**asdict(self))


CODE32 = Segment(selector=SEL_CODE32, type=0xB)                 # execute/read, accessed
DATA = Segment(selector=SEL_DATA, type=0x3)                     # read/write, accessed
CODE64 = Segment(selector=SEL_CODE64, type=0xB, db=0, l=1)      # 64-bit code (L=1, D=0)
TSS = Segment(base=TSS_BASE, limit=TSS_LIMIT, selector=SEL_TSS, type=0xB, s=0, db=0, g=0)  # busy TSS
LDT_NONE = Segment(limit=0, type=0x2, present=0, s=0, db=0, g=0, unusable=1)


def gdt_bytes() -> bytes:
    """The GDT image: null, code32, data, code64, then the 16-byte TSS descriptor."""
    entries = [0, CODE32.descriptor(), DATA.descriptor(), CODE64.descriptor(), TSS.descriptor(), TSS_BASE >> 32]
    return struct.pack("<6Q", *entries)


def write_gdt(memory) -> None:
    """Write the GDT at GDT_BASE and a zeroed TSS at TSS_BASE into ``memory`` (guest RAM at 0)."""
    memory.write(GDT_BASE, gdt_bytes())
    memory.write(TSS_BASE, bytes(TSS_LIMIT + 1))


def page_table_size(gib: int) -> int:
    """Bytes of page tables :func:`write_page_tables` uses for ``gib`` GiB."""
    return (2 + gib) * 0x1000


def write_page_tables(memory, gib: int = 4, base: int = PML4_BASE) -> int:
    """Identity-map guest-virtual [0, gib GiB) to guest-physical with 2 MiB pages
    (PML4 -> one PDPT -> ``gib`` page directories).  Returns the CR3 value.

    >>> import kvmlab
    >>> mem = kvmlab.GuestMemory(0x20000)
    >>> hex(write_page_tables(mem, gib=1))
    '0x10000'
    >>> [hex(v) for v in mem.view("<u8", 0x10000, 1)], [hex(v) for v in mem.view("<u8", 0x12000 + 8, 1)]
    (['0x11003'], ['0x200083'])
    """
    if not 1 <= gib <= 512:
        raise ValueError(f"gib must be 1..512 (one PDPT), got {gib}")
    pdpt = base + 0x1000
    tables = bytearray(page_table_size(gib))
    struct.pack_into("<Q", tables, 0, pdpt | PTE_P | PTE_RW)
    for g in range(gib):
        pd = pdpt + 0x1000 * (g + 1)
        struct.pack_into("<Q", tables, 0x1000 + 8 * g, pd | PTE_P | PTE_RW)
        struct.pack_into("<512Q", tables, pd - base,
                         *[((g << 30) | (i << 21)) | PTE_P | PTE_RW | PTE_PS for i in range(512)])
    memory.write(base, bytes(tables))
    return base


def set_mode(sregs, mode: str, cr3: int = PML4_BASE):
    """Change a ``kvm_sregs`` (e.g. from KVM_GET_SREGS after reset) for ``mode``; returns it.

    * real: CS selector 0 / base 0 (reset has base 0xFFFF0000), IDT at 0 with limit 0x3FF.
    * protected: CR0 = PE|ET, CS = 0x08, data segments = 0x10, TR = 0x20, GDT at 0x500,
      IDT base 0 limit 0 (so any exception triple-faults: SHUTDOWN).
    * long: as protected but CS = 0x18 (L=1), CR0 |= PG, CR3 = page tables, CR4 = PAE,
      EFER = LME|LMA.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use 'real', 'protected' or 'long'")
    if mode == "real":
        sregs.cs.selector, sregs.cs.base = 0, 0
        for name in ("ds", "es", "fs", "gs", "ss"):
            seg = getattr(sregs, name)
            seg.selector, seg.base = 0, 0
        sregs.idt.base, sregs.idt.limit = 0, 0x3FF
        return sregs
    sregs.cs = (CODE64 if mode == "long" else CODE32).to_kvm()
    for name in ("ds", "es", "fs", "gs", "ss"):
        setattr(sregs, name, DATA.to_kvm())
    sregs.tr = TSS.to_kvm()
    sregs.ldt = LDT_NONE.to_kvm()
    sregs.gdt.base, sregs.gdt.limit = GDT_BASE, GDT_LIMIT
    sregs.idt.base, sregs.idt.limit = 0, 0
    sregs.cr0 = CR0_PE | CR0_ET
    sregs.cr4 = 0
    sregs.efer = 0
    if mode == "long":
        sregs.cr0 |= CR0_PG
        sregs.cr3 = cr3
        sregs.cr4 = CR4_PAE
        sregs.efer = EFER_LME | EFER_LMA
    return sregs
