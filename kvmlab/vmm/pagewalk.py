"""A reference x86 page walker in plain Python: what the MMU does for one linear address.

It reads the guest's page tables from guest-physical memory through the VM's memslots
(the second stage: GPA -> memslot -> offset in the host memory that backs it) and returns
a :class:`Walk`: each level's entry decoded, the final guest-physical address or the
#PF the CPU would raise (with its error code).  Paging modes: none, 32-bit (4 KiB and
4 MiB PSE pages), PAE (4 KiB, 2 MiB) and 4-level (4 KiB, 2 MiB, 1 GiB).

>>> import kvmlab
>>> from kvmlab.vmm import modes
>>> mem = kvmlab.GuestMemory(0x20000)
>>> cr3 = modes.write_page_tables(mem, gib=1)          # identity map, 2 MiB pages
>>> w = walk(mem, 0x1234, cr0=0x80000011, cr3=cr3, cr4=0x20, efer=0x500)
>>> w.mode, hex(w.gpa), [lv.name for lv in w.levels], w.page_size
('4-level', '0x1234', ['PML4E', 'PDPTE', 'PDE'], 2097152)
>>> w.second_stage
'slot 0 + 0x1234'
>>> walk(mem, 0x40000000, cr0=0x80000011, cr3=cr3, cr4=0x20, efer=0x500).fault.error_code
0

Two simplifications, both visible to a guest only if it changes its tables without
telling the CPU: there is no TLB (every walk reads memory), and in PAE mode the four
PDPTEs are read from memory (a CPU loads them when CR3 is written).  LA57 (5-level) is
walked too.

``memory`` is a VmFd (its ``slots``), a dict of slots, a :class:`kvmlab.GuestMemory`
(mapped at guest-physical 0) or a dict ``{gpa: GuestMemory}``.  The walker never
prints host addresses: the second stage is shown as ``slot N + offset``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import hostmem

CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
CR4_SMEP = 1 << 20
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11

PF_P, PF_W, PF_U, PF_RSVD, PF_I = 1, 2, 4, 8, 16

#: flag name -> bit, in the order the walk shows them
FLAG_BITS = (("P", 0), ("R/W", 1), ("U/S", 2), ("PWT", 3), ("PCD", 4), ("A", 5), ("D", 6),
             ("PS", 7), ("G", 8), ("NX", 63))

# per mode: (entry size, [(entry name, shift, index bits)], virtual-address bits)
_LAYOUT = {
    "32-bit": (4, [("PDE", 22, 10), ("PTE", 12, 10)], 32),
    "PAE": (8, [("PDPTE", 30, 2), ("PDE", 21, 9), ("PTE", 12, 9)], 32),
    "4-level": (8, [("PML4E", 39, 9), ("PDPTE", 30, 9), ("PDE", 21, 9), ("PTE", 12, 9)], 48),
    "5-level": (8, [("PML5E", 48, 9), ("PML4E", 39, 9), ("PDPTE", 30, 9), ("PDE", 21, 9),
                    ("PTE", 12, 9)], 57),
}
_FIELD = {"PML5E": "PML5", "PML4E": "PML4", "PDPTE": "PDPT", "PDE": "PD", "PTE": "PT"}


# ------------------------------------------------------------------ guest-physical memory
class PhysMem:
    """Guest-physical memory as the VM's memslots map it: ``read(gpa, n)`` and
    ``locate(gpa) -> (slot, offset)``.  No host addresses ever leave it."""

    def __init__(self, memory):
        self.regions: list[tuple[int, int, int, object]] = []   # (gpa, size, slot, backing)
        slots = getattr(memory, "slots", memory)
        if hasattr(slots, "array") and hasattr(slots, "size"):        # one GuestMemory at 0
            self.regions.append((0, slots.size, 0, slots))
        elif isinstance(slots, dict):
            for key, s in sorted(slots.items()):
                if hasattr(s, "guest_phys_addr"):                   # a MemorySlot
                    self.regions.append((s.guest_phys_addr, s.memory_size, s.slot, s))
                else:                                               # {gpa: GuestMemory}
                    self.regions.append((key, s.size, len(self.regions), s))
        else:
            raise TypeError("memory: give a VmFd, its slots, a GuestMemory or {gpa: GuestMemory}")
        self.regions.sort()

    def locate(self, gpa: int):
        """``(slot, offset)`` of ``gpa``, or None if no memslot covers it (an MMIO hole)."""
        for base, size, slot, _ in self.regions:
            if base <= gpa < base + size:
                return slot, gpa - base
        return None

    def _array(self, backing):
        mem = getattr(backing, "memory", backing)
        if mem is not None and hasattr(mem, "array"):
            return mem.array
        return hostmem.lookup(backing.userspace_addr, backing.memory_size)

    def view(self, gpa: int, n: int):
        """A uint8 numpy view of ``[gpa, gpa+n)`` if one slot holds all of it, else None."""
        for base, size, _, backing in self.regions:
            if base <= gpa and gpa + n <= base + size:
                arr = self._array(backing)
                return None if arr is None else arr[gpa - base:gpa - base + n]
        return None

    def read(self, gpa: int, n: int) -> bytes | None:
        v = self.view(gpa, n)
        return None if v is None else v.tobytes()

    def read_int(self, gpa: int, size: int) -> int | None:
        b = self.read(gpa, size)
        return None if b is None else int.from_bytes(b, "little")

    def write_int(self, gpa: int, size: int, value: int) -> None:
        v = self.view(gpa, size)
        if v is not None:
            v[:] = np.frombuffer(value.to_bytes(size, "little"), dtype=np.uint8)

    def describe(self, gpa: int) -> str:
        """``"slot 0 + 0x1234"`` or ``"no memslot (MMIO)"``."""
        loc = self.locate(gpa)
        return "no memslot (MMIO)" if loc is None else f"slot {loc[0]} + {loc[1]:#x}"


def _phys(memory) -> PhysMem:
    return memory if isinstance(memory, PhysMem) else PhysMem(memory)


# ------------------------------------------------------------------ modes and splits
def paging_mode(cr0: int, cr4: int, efer: int) -> str:
    """"none", "32-bit", "PAE", "4-level" or "5-level" from CR0.PG, CR4.PAE/LA57, EFER.LMA."""
    if not cr0 & CR0_PG:
        return "none"
    if not cr4 & CR4_PAE:
        return "32-bit"
    if efer & EFER_LMA:
        return "5-level" if cr4 & CR4_LA57 else "4-level"
    return "PAE"


def split(va: int, mode: str) -> list[tuple[str, int, int, int]]:
    """The bit fields of ``va``: ``[(name, high bit, low bit, value)]``, top first.

    >>> [(n, hi, lo, hex(v)) for n, hi, lo, v in split(0x00403004, "32-bit")]
    [('PD', 31, 22, '0x1'), ('PT', 21, 12, '0x3'), ('offset', 11, 0, '0x4')]
    """
    if mode == "none":
        return [("physical", 63, 0, va)]
    _, levels, _ = _LAYOUT[mode]
    out = [(_FIELD[name], shift + bits - 1, shift, (va >> shift) & ((1 << bits) - 1))
           for name, shift, bits in levels]
    return out + [("offset", 11, 0, va & 0xFFF)]


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class Level:
    """One paging-structure entry the walk read."""
    name: str            # "PML4E", "PDPTE", "PDE", "PTE"
    table: int           # GPA of the table
    index: int
    entry_addr: int      # GPA of the entry
    raw: int
    size: int            # 4 or 8 bytes
    leaf: bool           # maps a page (PTE, or PS=1)
    next: int            # GPA of the next table, or of the page frame for a leaf
    page_size: int | None
    slot: str            # second stage of the entry itself: "slot 0 + 0x10000"

    def flag(self, name: str) -> bool:
        return bool(self.raw >> dict(FLAG_BITS)[name] & 1)

    @property
    def flags(self) -> dict[str, bool]:
        """Each flag -> set?  (PS is PAT on a PTE; G and D only mean something on a leaf.)"""
        out = {n: bool(self.raw >> b & 1) for n, b in FLAG_BITS if b < 8 * self.size}
        if self.name == "PTE":
            out.pop("PS")
            out["PAT"] = bool(self.raw >> 7 & 1)
        return out

    def __str__(self) -> str:
        shown = " ".join(n for n, v in self.flags.items() if v) or "-"
        what = f"page {self.next:#x} ({_size(self.page_size)})" if self.leaf else f"table {self.next:#x}"
        w = 2 * self.size
        return (f"{self.name:5} [{self.index:3}] @ {self.entry_addr:#x} = {self.raw:#0{w + 2}x}  "
                f"{shown:<22} -> {what}")


@dataclass(frozen=True)
class Fault:
    """The exception the access would raise: ``vector`` 14 (#PF, ``error_code``) or 13
    (#GP for a non-canonical address)."""
    vector: int
    error_code: int
    level: str | None
    reason: str

    def __str__(self) -> str:
        if self.vector == 13:
            return f"#GP(0): {self.reason}"
        bits = [n for b, n in ((PF_P, "P"), (PF_W, "W"), (PF_U, "U"), (PF_RSVD, "RSVD"), (PF_I, "I/D"))
                if self.error_code & b]
        return f"#PF error code {self.error_code:#x} ({'|'.join(bits) or '0'}) at {self.level}: {self.reason}"


@dataclass
class Walk:
    """The result of :func:`walk` (print it for the whole story)."""
    va: int
    mode: str
    access: str
    user: bool
    cr3: int
    levels: list[Level] = field(default_factory=list)
    gpa: int | None = None
    page_size: int | None = None
    writable: bool = False
    usermode: bool = False
    executable: bool = False
    fault: Fault | None = None
    second_stage: str = ""

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def split(self) -> list[tuple[str, int, int, int]]:
        """The bit fields of ``va`` as this walk used them (a 2 MiB page has a 21-bit offset)."""
        parts = split(self.va, self.mode)
        if self.page_size and self.page_size > 0x1000:
            bits = self.page_size.bit_length() - 1
            parts = [p for p in parts if p[2] >= bits] + [("offset", bits - 1, 0, self.va & (self.page_size - 1))]
        return parts

    def __str__(self) -> str:
        lines = [f"walk {self.va:#x} ({self.access}, {'user' if self.user else 'supervisor'}), "
                 f"paging: {self.mode}" + (f", CR3 {self.cr3:#x}" if self.mode != "none" else "")]
        if self.mode != "none":
            lines.append("  " + " | ".join(f"{n}[{hi}:{lo}]={v:#x}" for n, hi, lo, v in self.split))
        lines += ["  " + str(lv) for lv in self.levels]
        if self.fault is not None:
            lines.append(f"  fault: {self.fault}")
        else:
            perms = "r" + ("w" if self.writable else "-") + ("x" if self.executable else "-") + \
                (" user" if self.usermode else " kernel")
            lines.append(f"  -> GPA {self.gpa:#x}" + (f" ({_size(self.page_size)} page, {perms})"
                                                      if self.page_size else ""))
            lines.append(f"  second stage: GPA {self.gpa:#x} -> {self.second_stage}")
        return "\n".join(lines)

    __repr__ = __str__


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, s in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= s and n % s == 0:
            return f"{n // s}{unit}"
    return str(n)


# ------------------------------------------------------------------ the walk
def _addr_mask(maxphyaddr: int) -> int:
    return (1 << maxphyaddr) - 1


def walk(memory, va: int, *, cr0: int, cr3: int, cr4: int = 0, efer: int = 0, access: str = "read",
         user: bool = False, set_ad: bool = False, maxphyaddr: int = 52, gbpages: bool = True) -> Walk:
    """Translate linear address ``va`` as the MMU would.

    ``access`` is "read", "write" or "fetch"; ``user`` means CPL 3.  With ``set_ad`` the
    walk sets the Accessed bits (and Dirty on the leaf for a write) in guest memory, as
    hardware does; by default it only looks.  ``gbpages``: the CPU has 1 GiB pages
    (CPUID 0x80000001 EDX bit 26); without them PS in a PDPTE is a reserved bit.
    """
    if access not in ("read", "write", "fetch"):
        raise ValueError(f"access must be 'read', 'write' or 'fetch', not {access!r}")
    mem = _phys(memory)
    mode = paging_mode(cr0, cr4, efer)
    w = Walk(va, mode, access, user, cr3)
    write, fetch = access == "write", access == "fetch"
    if mode == "none":
        w.gpa, w.writable, w.usermode, w.executable = va, True, True, True
        w.second_stage = mem.describe(va)
        return w
    esize, layout, vbits = _LAYOUT[mode]
    nxe = bool(efer & EFER_NXE)
    if mode in ("4-level", "5-level"):
        top = va >> (vbits - 1)
        if top not in (0, (1 << (64 - vbits + 1)) - 1):
            w.fault = Fault(13, 0, None, f"{va:#x} is not canonical (bits 63:{vbits - 1} must all equal bit {vbits - 1})")
            return w
    else:
        va &= 0xFFFFFFFF
        w.va = va
    ec_base = (PF_W if write else 0) | (PF_U if user else 0) | (PF_I if fetch and (nxe or cr4 & CR4_SMEP) else 0)
    amask = _addr_mask(maxphyaddr)
    if mode == "32-bit":
        table = cr3 & 0xFFFFF000
    elif mode == "PAE":
        table = cr3 & 0xFFFFFFE0
    else:
        table = cr3 & amask & ~0xFFF
    writable = usermode = True
    executable = True
    touched: list[Level] = []
    for depth, (name, shift, bits) in enumerate(layout):
        index = (va >> shift) & ((1 << bits) - 1)
        addr = table + esize * index
        raw = mem.read_int(addr, esize)
        if raw is None:
            w.fault = Fault(14, ec_base, name, f"the {name} at GPA {addr:#x} is not in any memslot")
            return w
        is_pte = depth == len(layout) - 1
        present = raw & 1
        ps = bool(raw >> 7 & 1) and not is_pte
        if mode == "32-bit" and ps and not cr4 & CR4_PSE:
            ps = False                                  # PS is ignored without CR4.PSE
        pae_pdpte = mode == "PAE" and depth == 0
        leaf = is_pte or (ps and name in ("PDE", "PDPTE") and not pae_pdpte)
        page_size = 1 << shift if leaf else None
        nxt = _next_address(mode, raw, shift, leaf, amask)
        lv = Level(name, table, index, addr, raw, esize, leaf, nxt, page_size,
                   mem.describe(addr))
        w.levels.append(lv)
        if not present:
            w.fault = Fault(14, ec_base, name, f"{name} is not present (P=0)")
            return w
        why = _reserved(mode, name, raw, ps, leaf, shift, nxe, maxphyaddr, pae_pdpte, gbpages)
        if why:
            w.fault = Fault(14, ec_base | PF_P | PF_RSVD, name, why)
            return w
        touched.append(lv)
        if not pae_pdpte:
            writable &= bool(raw & 2)
            usermode &= bool(raw & 4)
            if nxe and raw >> 63 & 1:
                executable = False
        if leaf:
            break
        table = nxt
    leaf_lv = w.levels[-1]
    w.writable, w.usermode, w.executable = writable, usermode, executable
    why = None
    if user and not usermode:
        why = "a user-mode access to a supervisor page (U/S=0 at some level)"
    elif write and not writable and (user or cr0 & CR0_WP):
        why = "a write to a read-only page (R/W=0 at some level" + ("" if user else ", CR0.WP=1") + ")"
    elif fetch and not executable:
        why = "an instruction fetch from a no-execute page (NX=1, EFER.NXE=1)"
    elif fetch and not user and usermode and cr4 & CR4_SMEP:
        why = "a supervisor instruction fetch from a user page (CR4.SMEP=1)"
    if why:
        w.fault = Fault(14, ec_base | PF_P, leaf_lv.name, why)
        return w
    w.page_size = leaf_lv.page_size
    w.gpa = leaf_lv.next | (va & (leaf_lv.page_size - 1))
    w.second_stage = mem.describe(w.gpa)
    if set_ad:
        for lv in touched:
            if not (mode == "PAE" and lv.name == "PDPTE"):
                new = lv.raw | 0x20 | (0x40 if lv.leaf and write else 0)
                if new != lv.raw:
                    mem.write_int(lv.entry_addr, lv.size, new)
    return w


def _next_address(mode, raw, shift, leaf, amask) -> int:
    if mode == "32-bit":
        if leaf and shift == 22:                        # 4 MiB page, PSE-36 bits 13..20 = PA 32..39
            return (raw & 0xFFC00000) | ((raw >> 13) & 0xFF) << 32
        return raw & 0xFFFFF000
    a = raw & amask & ~0xFFF
    if leaf and shift > 12:
        a &= ~((1 << shift) - 1)
    return a


def _reserved(mode, name, raw, ps, leaf, shift, nxe, maxphyaddr, pae_pdpte, gbpages=True) -> str | None:
    """Why ``raw`` has a reserved bit set (a #PF with RSVD), or None."""
    if mode == "32-bit":
        if leaf and shift == 22:
            top = 13 + min(max(maxphyaddr, 32), 40) - 32     # PSE-36: PA bits 32.. in bits 13..
            if raw & (((1 << 22) - 1) & ~((1 << top) - 1)):
                return (f"{name}: bits {top}-21 of a 4 MiB PDE are reserved (PSE-36 address bits "
                        f"end at {top - 1} with MAXPHYADDR {maxphyaddr})" if top < 21 else
                        f"{name}: bit 21 of a 4 MiB PDE is reserved")
        return None
    limit = 63 if mode == "PAE" else 52                   # PAE: bits 62:M, else 51:M
    if maxphyaddr < limit and raw & (((1 << limit) - 1) & ~((1 << maxphyaddr) - 1)):
        return f"{name}: address bits at or above MAXPHYADDR ({maxphyaddr}) are set"
    if raw >> 63 & 1 and (not nxe or pae_pdpte):
        return f"{name}: NX (bit 63) is set but EFER.NXE is 0" if not pae_pdpte else f"{name}: bit 63 is reserved in a PAE PDPTE"
    if pae_pdpte and raw & 0x1E6:
        return f"{name}: bits 1, 2, 5-8 of a PAE PDPTE are reserved"
    if name in ("PML4E", "PML5E") and raw >> 7 & 1:
        return f"{name}: PS (bit 7) is reserved in a {name}"
    if name == "PDPTE" and leaf and not gbpages:
        return "PDPTE: PS (bit 7) is reserved: this CPU has no 1 GiB pages (CPUID 0x80000001 EDX.Page1GB)"
    if leaf and shift > 12 and raw & ((1 << shift) - 1) & ~0x1FFF:
        return f"{name}: bits 13-{shift - 1} of a {_size(1 << shift)} page entry are reserved"
    return None


# ------------------------------------------------------------------ whole address space
@dataclass(frozen=True)
class Range:
    """A run of linear addresses mapped contiguously with the same permissions."""
    va: int
    size: int
    gpa: int
    writable: bool
    user: bool
    executable: bool
    pages: int
    page_size: int

    @property
    def end(self) -> int:
        return self.va + self.size

    @property
    def perms(self) -> str:
        return ("r" + ("w" if self.writable else "-") + ("x" if self.executable else "-")
                + (" user" if self.user else " kernel"))

    def __str__(self) -> str:
        return (f"{self.va:#018x}-{self.end - 1:#018x} -> GPA {self.gpa:#x}  {self.perms}  "
                f"{self.pages} x {_size(self.page_size)}")


def address_space_map(memory, *, cr0: int, cr3: int, cr4: int = 0, efer: int = 0,
                      maxphyaddr: int = 52, gbpages: bool = True) -> list[Range]:
    """Every mapped linear range, merged where both linear and physical addresses are
    contiguous and the permissions and page size match.

    >>> import kvmlab
    >>> from kvmlab.vmm import modes
    >>> mem = kvmlab.GuestMemory(0x20000)
    >>> cr3 = modes.write_page_tables(mem, gib=1)
    >>> [str(r) for r in address_space_map(mem, cr0=0x80000011, cr3=cr3, cr4=0x20, efer=0x500)]
    ['0x0000000000000000-0x000000003fffffff -> GPA 0x0  rwx kernel  512 x 2M']
    """
    mem = _phys(memory)
    mode = paging_mode(cr0, cr4, efer)
    if mode == "none":
        return []
    esize, layout, vbits = _LAYOUT[mode]
    nxe = bool(efer & EFER_NXE)
    amask = _addr_mask(maxphyaddr)
    if mode == "32-bit":
        root = cr3 & 0xFFFFF000
    elif mode == "PAE":
        root = cr3 & 0xFFFFFFE0
    else:
        root = cr3 & amask & ~0xFFF
    out: list[Range] = []

    def visit(table, depth, va_base, w, u, x):
        name, shift, bits = layout[depth]
        arr = mem.view(table, esize << bits)
        if arr is None:
            return
        entries = arr.view(np.uint32 if esize == 4 else np.uint64)
        for index in np.flatnonzero(entries & 1):
            raw = int(entries[index])
            va = va_base | (int(index) << shift)
            is_pte = depth == len(layout) - 1
            ps = bool(raw >> 7 & 1) and not is_pte and not (mode == "32-bit" and not cr4 & CR4_PSE)
            pae_pdpte = mode == "PAE" and depth == 0
            leaf = is_pte or (ps and name in ("PDE", "PDPTE") and not pae_pdpte)
            if _reserved(mode, name, raw, ps, leaf, shift, nxe, maxphyaddr, pae_pdpte, gbpages):
                continue
            nw, nu, nx_ = w, u, x
            if not pae_pdpte:
                nw, nu = w and bool(raw & 2), u and bool(raw & 4)
                nx_ = x and not (nxe and raw >> 63 & 1)
            nxt = _next_address(mode, raw, shift, leaf, amask)
            if leaf:
                _append(out, _canonical(va, vbits, mode), 1 << shift, nxt, nw, nu, nx_)
            else:
                visit(nxt, depth + 1, va, nw, nu, nx_)

    visit(root, 0, 0, True, True, True)
    return out


def _canonical(va: int, vbits: int, mode: str) -> int:
    if mode in ("4-level", "5-level") and va >> (vbits - 1) & 1:
        return va | ((1 << 64) - (1 << vbits))
    return va


def _append(out, va, size, gpa, w, u, x):
    if out:
        r = out[-1]
        if (r.end == va and r.gpa + r.size == gpa and (r.writable, r.user, r.executable) == (w, u, x)
                and r.page_size == size):
            out[-1] = Range(r.va, r.size + size, r.gpa, w, u, x, r.pages + 1, size)
            return
    out.append(Range(va, size, gpa, w, u, x, 1, size))


# ------------------------------------------------------------------ on a live vCPU
def walk_vcpu(vcpu, va: int | None = None, access: str = "read", user: bool | None = None,
              **kw) -> Walk:
    """:func:`walk` with the vCPU's CR0/CR3/CR4/EFER and its VM's memslots.  ``va``
    defaults to the linear address of the next instruction (CS.base + RIP); ``user``
    to CPL 3 (CS.selector & 3 in protected mode)."""
    s = vcpu.get_sregs()
    if va is None:
        va = s.cs.base + vcpu.get_regs().rip
    if user is None:
        user = bool(s.cr0 & 1) and (s.cs.selector & 3) == 3
    kw.setdefault("gbpages", guest_has_gbpages(vcpu))
    kw.setdefault("maxphyaddr", guest_maxphyaddr(vcpu))
    return walk(vcpu.vm, va, cr0=s.cr0, cr3=s.cr3, cr4=s.cr4, efer=s.efer, access=access,
                user=user, **kw)


def guest_maxphyaddr(vcpu) -> int:
    """The guest's physical-address width: CPUID 0x80000008 EAX[7:0] as KVM_SET_CPUID2 set
    it, else 36 (what KVM assumes without that leaf).  Address bits above it are reserved."""
    try:
        entries = vcpu.get_cpuid2()
    except Exception:   # noqa: BLE001 - a backend without KVM_GET_CPUID2
        return 52
    top = next((e.eax for e in entries if e.function == 0x80000000), 0)
    if top < 0x80000008:
        return 36
    return next((e.eax & 0xFF for e in entries if e.function == 0x80000008 and e.eax & 0xFF), 36)


def guest_has_gbpages(vcpu) -> bool:
    """Whether the guest's CPUID (KVM_SET_CPUID2) offers 1 GiB pages and KVM supports them
    (``guest_cpu_cap_has(GBPAGES)``: the guest's bit only counts where KVM_GET_SUPPORTED_CPUID
    has it too).  KVM's own walker (KVM_TRANSLATE, shadow paging) treats PS in a PDPTE as
    reserved without it."""
    try:
        entries = vcpu.get_cpuid2()
    except Exception:   # noqa: BLE001 - a backend without KVM_GET_CPUID2: assume hardware's answer
        return True
    if not any(e.function == 0x80000001 and e.edx >> 26 & 1 for e in entries):
        return False
    try:
        supported = vcpu.vm.kvm.get_supported_cpuid()
    except Exception:   # noqa: BLE001 - no system fd to ask: trust the guest's table
        return True
    return any(e.function == 0x80000001 and e.edx >> 26 & 1 for e in supported)


def map_vcpu(vcpu, **kw) -> list[Range]:
    """:func:`address_space_map` with the vCPU's control registers and its VM's memslots."""
    s = vcpu.get_sregs()
    kw.setdefault("gbpages", guest_has_gbpages(vcpu))
    kw.setdefault("maxphyaddr", guest_maxphyaddr(vcpu))
    return address_space_map(vcpu.vm, cr0=s.cr0, cr3=s.cr3, cr4=s.cr4, efer=s.efer, **kw)
