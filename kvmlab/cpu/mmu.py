"""Paging: 32-bit (4 KiB / 4 MiB with PSE), PAE and 4-level (4 KiB, 2 MiB, 1 GiB) walks with
A/D bits and #PF error codes, and the software TLB in front of them.

Reserved bits (#PF with P=1 and RSVD): address bits at or above MAXPHYADDR (bits 51:M in
4-level entries, 62:M in PAE entries and PDPTEs; M = st[MAXPHYADDR], from the CPUID table:
0x80000008 EAX[7:0], 36 without that leaf), XD with EFER.NXE=0, PS in a PML4E, PS in a
PDPTE without 1 GiB pages (st[GBPAGES]: CPUID 0x80000001 EDX[26]), bits 20:13 of a 2 MiB
and 29:13 of a 1 GiB page entry, the PAE PDPTE reserved bits, and in 32-bit paging the bits
of a 4 MiB PDE's 21:13 beyond the PSE-36 address width min(M, 40).

Accessed bits are set on every present entry used while walking down (as QEMU and
hardware do); the leaf's A bit, and its D bit for a write, only when the access is
allowed.  A TLB entry caches one 4 KiB linear page with the AND of R/W and U/S and the
OR of NX over all levels, and whether the leaf is already dirty.  Flushes: CR3 writes
(global pages kept when CR4.PGE), INVLPG, CR0.PG/WP and CR4 paging bits, memslot changes.
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .physmem import pte_read, pte_write, phys_host_page

ACC_W = 1
ACC_U = 2
ACC_X = 4

ADDR_MASK = 0x000FFFFFFFFFF000


@njit
def raise_exc(st, vec, err):
    if st[ABORT] == 0 or st[EXC_VEC] < 0:
        st[EXC_VEC] = vec
        st[EXC_ERR] = err
    st[ABORT] = 1


@njit
def pf_error(st, present, acc, rsvd):
    e = present | ((acc & ACC_W) << 1) | ((acc & ACC_U) << 1) | (rsvd << 3)
    if acc & ACC_X:
        if (st[CR4] & (1 << 20)) != 0 or ((st[CR4] & 0x20) != 0 and (st[EFER] & 0x800) != 0):
            e |= 16
    return e


@njit
def perm_ok(st, f, acc):
    us = acc & ACC_U
    if us != 0 and (f & TLBF_U) == 0:
        return False
    if (acc & ACC_W) != 0 and (f & TLBF_W) == 0 and (us != 0 or (st[CR0] & 0x10000) != 0):
        return False
    if (acc & ACC_X) != 0:
        if (f & TLBF_NX) != 0:
            return False
        if us == 0 and (f & TLBF_U) != 0 and (st[CR4] & (1 << 20)) != 0:
            return False
    elif us == 0 and (f & TLBF_U) != 0 and (st[CR4] & (1 << 21)) != 0 and (st[RFLAGS] & F_AC) == 0:
        return False
    return True


@njit
def walk(st, pm, lin, acc, side):
    """Translate lin.  Returns (physical address, flags) or (-1, #PF error code).
    side=1 sets A/D bits; side=0 has no side effects (KVM_TRANSLATE)."""
    cr4 = st[CR4]
    nxe = (st[EFER] >> 11) & 1
    f = TLBF_W | TLBF_U
    mp = st[MAXPHYADDR]
    if mp < 32 or mp > 52:
        mp = 52
    if side:
        st[ix(STAT + ST_WALKS)] += 1
    if (cr4 & 0x20) == 0:
        # 32-bit paging
        lin &= 0xFFFFFFFF
        pdea = (st[CR3] & 0xFFFFF000) + ((lin >> 20) & 0xFFC)
        pde = pte_read(pm, pdea, 4)
        if (pde & 1) == 0:
            return -1, pf_error(st, 0, acc, 0)
        if (pde & 2) == 0:
            f &= ~TLBF_W
        if (pde & 4) == 0:
            f &= ~TLBF_U
        if (pde & 0x80) != 0 and (cr4 & 0x10) != 0:
            # PSE-36: bits 20:13 hold PA bits 39:32 up to min(MAXPHYADDR, 40); the rest of 21:13
            # is reserved
            m = min(max(mp, 32), 40)
            if (pde & 0x3FE000 & ~(((1 << (m - 32)) - 1) << 13)) != 0:
                return -1, pf_error(st, 1, acc, 1)
            phys = (pde & 0xFFC00000) | ((pde & 0x1FE000) << 19) | (lin & 0x3FFFFF)
            leafa = pdea
            leaf = pde
        else:
            if side and (pde & 0x20) == 0:
                pte_write(pm, pdea, 4, pde | 0x20)
            ptea = (pde & 0xFFFFF000) + ((lin >> 10) & 0xFFC)
            leaf = pte_read(pm, ptea, 4)
            leafa = ptea
            if (leaf & 1) == 0:
                return -1, pf_error(st, 0, acc, 0)
            if (leaf & 2) == 0:
                f &= ~TLBF_W
            if (leaf & 4) == 0:
                f &= ~TLBF_U
            phys = (leaf & 0xFFFFF000) | (lin & 0xFFF)
        esz = 4
    else:
        # reserved address bits: MAXPHYADDR..51 (4-level), MAXPHYADDR..62 (PAE)
        if (st[EFER] & 0x400) != 0:
            table = st[CR3] & ADDR_MASK
            level = 4
            hi = 0x000FFFFFFFFFFFFF & ~((1 << mp) - 1)
        else:
            hi = 0x7FFFFFFFFFFFFFFF & ~((1 << mp) - 1)
            pdpa = (st[CR3] & 0xFFFFFFE0) + ((lin >> 27) & 0x18)
            pdpte = pte_read(pm, pdpa, 8)
            if (pdpte & 1) == 0:
                return -1, pf_error(st, 0, acc, 0)
            if (pdpte & 0x1E6) != 0 or (pdpte >> 63) != 0 or (pdpte & hi) != 0:
                return -1, pf_error(st, 1, acc, 1)
            table = pdpte & ADDR_MASK
            level = 2
            lin &= 0xFFFFFFFF
        leaf = 0
        leafa = 0
        phys = 0
        while True:
            shift = 12 + 9 * (level - 1)
            ea = table + ((lin >> shift) & 0x1FF) * 8
            e = pte_read(pm, ea, 8)
            if (e & 1) == 0:
                return -1, pf_error(st, 0, acc, 0)
            if (e < 0 and nxe == 0) or (e & hi) != 0:
                return -1, pf_error(st, 1, acc, 1)
            if (e & 0x80) != 0 and level > 1:
                # PS: reserved in a PML4E, in a PDPTE without 1 GiB pages; a large page's
                # bits 29:13 (1 GiB) / 20:13 (2 MiB) are reserved (bit 12 is PAT)
                if level == 4 or (level == 3 and st[GBPAGES] == 0):
                    return -1, pf_error(st, 1, acc, 1)
                if (e & (((1 << (12 + 9 * (level - 1))) - 1) & ~0x1FFF)) != 0:
                    return -1, pf_error(st, 1, acc, 1)
            if (e & 2) == 0:
                f &= ~TLBF_W
            if (e & 4) == 0:
                f &= ~TLBF_U
            if e < 0:
                f |= TLBF_NX
            if level == 1 or (e & 0x80) != 0:
                leaf = e
                leafa = ea
                pmask = (1 << shift) - 1
                phys = (e & ADDR_MASK & ~pmask) | (lin & pmask)
                break
            if side and (e & 0x20) == 0:
                pte_write(pm, ea, 8, e | 0x20)
            table = e & ADDR_MASK
            level -= 1
        esz = 8
    if (leaf & 0x100) != 0 and (cr4 & 0x80) != 0:
        f |= TLBF_G
    if side:
        if not perm_ok(st, f, acc):
            return -1, pf_error(st, 1, acc, 0)
        nl = leaf | 0x20
        if (acc & ACC_W) != 0:
            nl |= 0x40
        if nl != leaf:
            pte_write(pm, leafa, esz, nl)
        leaf = nl
    if (leaf & 0x40) != 0:
        f |= TLBF_D
    return phys, f


@njit
def tlb_flush(st, keep_global, why):
    """Drop every translation (the global ones survive when keep_global); why is the
    ST_FLUSH_* counter naming the cause."""
    st[ix(STAT + ST_TLB_FLUSH)] += 1
    st[ix(STAT + why)] += 1
    st[TLB_LAST_FLUSH] = why
    st[TLB_LAST_FLUSH_RIP] = -1 if why == ST_FLUSH_SLOTS else st[INSN_RIP]
    for i in range(TLB_N):
        e = TLB + 4 * i
        if keep_global and (st[ix(e + 3)] & TLBF_G) != 0:
            continue
        st[ix(e)] = 0


@njit
def tlb_flush_page(st, lin):
    e = TLB + 4 * ((lin >> 12) & (TLB_N - 1))
    if st[ix(e)] == ((lin & ~0xFFF) | 1):
        st[ix(e)] = 0


@njit
def tlb_entry(st, pm, lin, acc):
    """TLB entry (index into st) for lin allowing access acc, or -1 after raising #PF."""
    e = TLB + 4 * ((lin >> 12) & (TLB_N - 1))
    tag = (lin & ~0xFFF) | 1
    if st[ix(e)] == tag:
        f = st[ix(e + 3)]
        if (st[CR0] & 0x80000000) == 0:
            st[ix(STAT + ST_TLB_HIT)] += 1
            return e
        if perm_ok(st, f, acc) and ((acc & ACC_W) == 0 or (f & TLBF_D) != 0):
            st[ix(STAT + ST_TLB_HIT)] += 1
            return e
    st[ix(STAT + ST_TLB_MISS)] += 1
    if (st[CR0] & 0x80000000) == 0:
        phys = lin & 0xFFFFFFFF if (st[EFER] & 0x400) == 0 else lin
        f = TLBF_W | TLBF_U | TLBF_D | TLBF_XS | TLBF_XU
    else:
        phys, f = walk(st, pm, lin, acc, 1)
        if phys < 0:
            st[CR2] = lin
            raise_exc(st, PF, f)
            st[EXC_CR2] = lin
            st[ix(STAT + ST_PF)] += 1
            return -1
        if perm_ok(st, f, ACC_X):
            f |= TLBF_XS
        if perm_ok(st, f, ACC_X | ACC_U):
            f |= TLBF_XU
    pp = phys & ~0xFFF
    h, hw = phys_host_page(pm, pp)
    if hw:
        f |= TLBF_HOSTW
    st[ix(e)] = tag
    st[ix(e + 1)] = pp
    st[ix(e + 2)] = h
    st[ix(e + 3)] = f
    return e


@njit
def translate(st, pm, lin):
    """KVM_TRANSLATE: (valid, physical) without side effects."""
    if (st[CR0] & 0x80000000) == 0:
        return 1, lin
    if (st[EFER] & 0x400) != 0 and ((lin << 16) >> 16) != lin:
        return 0, -1
    phys, f = walk(st, pm, lin, 0, 0)
    if phys < 0:
        return 0, -1
    return 1, phys
