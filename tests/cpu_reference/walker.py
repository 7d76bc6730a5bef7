"""A slow, obviously correct page walker (Intel SDM vol. 3 ch. 4), used to check the core.

walk(read, write, regs, lin, acc) -> (phys, None) or (None, error_code).  `read(addr, n)`
and `write(addr, n, value)` access guest-physical memory; regs is a dict with cr0 cr3 cr4
efer ac cpl.  acc is a set of 'w' (write), 'u' (user access), 'x' (fetch).

Accessed bits: set in every present paging-structure entry used on the way down; the
leaf's A (and D for a write) only when the access is allowed.  Reserved bits checked (a
#PF with P=1 and RSVD): XD with EFER.NXE=0; physical-address bits at or above MAXPHYADDR
(regs['maxphyaddr'], default 52): bits 51:M of a 4-level entry, 62:M of a PAE entry; PS in a
PML4E; PS in a PDPTE without 1 GiB pages (regs['gbpages'], default True); bits 29:13 of a
1 GiB and 20:13 of a 2 MiB page entry; PAE PDPTE bits 1, 2, 5-8 and 63; and bits 21:13 of
a 4 MiB PDE beyond the PSE-36 address bits (bits 13.. hold PA 32..min(M, 40)-1).
"""


def bit(v, n):
    return (v >> n) & 1


def walk(read, write, regs, lin, acc):
    cr0, cr3, cr4, efer = regs['cr0'], regs['cr3'], regs['cr4'], regs['efer']
    nxe = bit(efer, 11)
    is_w, is_u, is_x = 'w' in acc, 'u' in acc, 'x' in acc
    pae = bit(cr4, 5)
    lma = bit(efer, 10)
    m = regs.get('maxphyaddr', 52)
    gbpages = regs.get('gbpages', True)
    above_m = sum(1 << b for b in range(m, 52 if lma else 63))     # reserved address bits

    def err(present, rsvd=0):
        e = present | (is_w << 1) | (is_u << 2) | (rsvd << 3)
        if is_x and (bit(cr4, 20) or (pae and nxe)):
            e |= 1 << 4
        return None, e

    entries = []          # (address, size, value) of the entries used, top-down
    if not pae:
        lin &= 0xFFFFFFFF
        pde_a = (cr3 & 0xFFFFF000) | ((lin >> 22) << 2)
        pde = read(pde_a, 4)
        if not bit(pde, 0):
            return err(0)
        entries.append((pde_a, 4, pde))
        if bit(pde, 7) and bit(cr4, 4):
            pa_bits = min(max(m, 32), 40) - 32               # PSE-36: PA 32.. in bits 13..
            if any(bit(pde, b) for b in range(13 + pa_bits, 22)):
                return err(1, 1)
            phys = (pde & 0xFFC00000) | (((pde >> 13) & 0xFF) << 32) | (lin & 0x3FFFFF)
        else:
            pte_a = (pde & 0xFFFFF000) | (((lin >> 12) & 0x3FF) << 2)
            pte = read(pte_a, 4)
            if not bit(pte, 0):
                for a, n, v in entries:
                    write(a, n, v | 0x20)
                return err(0)
            entries.append((pte_a, 4, pte))
            phys = (pte & 0xFFFFF000) | (lin & 0xFFF)
    else:
        mask = 0x000FFFFFFFFFF000
        if lma:
            table = cr3 & mask
            levels = [39, 30, 21, 12]
        else:
            lin &= 0xFFFFFFFF
            pdpte_a = (cr3 & 0xFFFFFFE0) + 8 * (lin >> 30)
            pdpte = read(pdpte_a, 8)
            if not bit(pdpte, 0):
                return err(0)
            if pdpte & 0x1E6 or bit(pdpte, 63) or pdpte & above_m:
                return err(1, 1)
            table = pdpte & mask
            levels = [21, 12]
        phys = None
        for i, shift in enumerate(levels):
            ea = table + 8 * ((lin >> shift) & 0x1FF)
            e = read(ea, 8)
            if not bit(e, 0):
                for a, n, v in entries:
                    write(a, n, v | 0x20)
                return err(0)
            if bit(e, 63) and not nxe:
                for a, n, v in entries:
                    write(a, n, v | 0x20)
                return err(1, 1)
            rsvd = e & above_m
            if bit(e, 7) and shift == 39:
                rsvd = True
            if bit(e, 7) and shift == 30 and not gbpages:
                rsvd = True
            if bit(e, 7) and shift in (21, 30) and any(bit(e, b) for b in range(13, shift)):
                rsvd = True
            if rsvd:
                for a, n, v in entries:
                    write(a, n, v | 0x20)
                return err(1, 1)
            entries.append((ea, 8, e))
            if shift == 12 or bit(e, 7):
                phys = (e & mask & ~((1 << shift) - 1)) | (lin & ((1 << shift) - 1))
                break
            table = e & mask
    # permissions: AND of R/W and U/S, OR of XD over every entry used
    rw = all(bit(v, 1) for _, _, v in entries)
    us = all(bit(v, 2) for _, _, v in entries)
    xd = any(bit(v, 63) for _, n, v in entries if n == 8) and nxe
    ok = True
    if is_u and not us:
        ok = False
    if is_w and not rw and (is_u or bit(cr0, 16)):
        ok = False
    if is_x and xd:
        ok = False
    if is_x and not is_u and us and bit(cr4, 20):
        ok = False
    if not is_x and not is_u and us and bit(cr4, 21) and not regs.get('ac', 0):
        ok = False
    for a, n, v in entries[:-1]:
        write(a, n, v | 0x20)
    if not ok:
        return err(1)
    a, n, v = entries[-1]
    nv = v | 0x20 | (0x40 if is_w else 0)
    write(a, n, nv)
    return phys, None
