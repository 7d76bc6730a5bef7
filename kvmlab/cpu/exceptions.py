"""Delivering exceptions and interrupts: real-mode IVT, protected-mode IDT (16/32-bit
interrupt and trap gates, stack switch through the TSS), long-mode IDT (RSP0..2 and IST),
double fault, triple fault -> SHUTDOWN.

The frame is written before any register changes, so a fault while delivering leaves
the state as it was and turns into the next event (#DF rules of SDM table 6-5).
Task gates and 16-bit TSS stack switches are not implemented (emulation failure).
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .mmu import raise_exc
from .access import sys_read, sys_write, lin_mask, stack_size
from .segments import read_desc_nonnull, desc_attr, desc_base, desc_limit, seg_set, update_mode, seg_set_real

EV_EXC = 0        # fault/trap raised by an instruction (st[RIP] is the return address)
EV_SOFT = 1       # INT n / INT3 / INTO (gate DPL checked)
EV_EXT = 2        # external interrupt or NMI

R_OK = 0
R_FAULT = 1
R_UNSUP = 2


@njit
def has_error_code(vec):
    return vec == DF or vec == TS or vec == NP or vec == SS_ or vec == GP or vec == PF or vec == AC


@njit
def exc_class(vec):
    """0 benign, 1 contributory, 2 page fault, 3 double fault."""
    if vec == 0 or vec == TS or vec == NP or vec == SS_ or vec == GP:
        return 1
    if vec == PF:
        return 2
    if vec == DF:
        return 3
    return 0


@njit
def deliver_real(st, pm, vec):
    if vec * 4 + 3 > st[IDTR_LIMIT]:
        raise_exc(st, GP, 0)
        return R_FAULT
    a = st[IDTR_BASE] + vec * 4
    ip = sys_read(st, pm, a, 2)
    cs = sys_read(st, pm, a + 2, 2)
    if st[ABORT] != 0:
        return R_FAULT
    ssz = stack_size(st)
    m = 0xFFFF if ssz == 2 else 0xFFFFFFFF
    sp = st[RSP]
    base = st[ix(SEG + 4 * SS + BASE)]
    lim = st[ix(SEG + 4 * SS + LIMIT)]
    vals = (st[RFLAGS] & 0xFFFF, st[ix(SEG + 4 * CS + SEL)], st[RIP] & 0xFFFF)
    for k in range(3):
        sp = (sp - 2) & m
        if sp + 1 > lim:
            raise_exc(st, SS_, 0)
            return R_FAULT
        sys_write(st, pm, base + sp, 2, vals[k])
        if st[ABORT] != 0:
            return R_FAULT
    st[RSP] = (st[RSP] & ~m) | sp
    st[RFLAGS] &= ~(F_IF | F_TF | F_AC | F_RF)
    seg_set_real(st, CS, cs)
    st[RIP] = ip
    return R_OK


@njit
def tss_stack(st, pm, dpl, ist):
    """(ss, sp) for a privilege change to dpl (or IST entry ist) from the current TSS."""
    tr = SEG + 4 * TR
    tb = st[ix(tr + BASE)]
    if st[EFER] & 0x400:
        off = 0x24 + 8 * (ist - 1) if ist != 0 else 4 + 8 * dpl
        if off + 7 > st[ix(tr + LIMIT)]:
            raise_exc(st, TS, st[ix(tr + SEL)] & 0xFFFC)
            return 0, 0
        return 0, sys_read(st, pm, tb + off, 8)
    t = st[ix(tr + ATTR)] & 0xF
    if t == 0xB or t == 0x9:
        off = 4 + 8 * dpl
        if off + 5 > st[ix(tr + LIMIT)]:
            raise_exc(st, TS, st[ix(tr + SEL)] & 0xFFFC)
            return 0, 0
        sp = sys_read(st, pm, tb + off, 4)
        ss = sys_read(st, pm, tb + off + 4, 2)
        return ss, sp
    off = 2 + 4 * dpl
    sp = sys_read(st, pm, tb + off, 2)
    ss = sys_read(st, pm, tb + off + 2, 2)
    return ss, sp


@njit
def deliver_prot(st, pm, vec, err, kind):
    lm = (st[EFER] & 0x400) != 0
    gsz = 16 if lm else 8
    ext = 1 if kind == EV_EXT else 0
    gerr = vec * 8 + 2 + ext
    if vec * gsz + gsz - 1 > st[IDTR_LIMIT]:
        raise_exc(st, GP, gerr)
        return R_FAULT
    ga = st[IDTR_BASE] + vec * gsz
    lo = sys_read(st, pm, ga, 4)
    hi = sys_read(st, pm, ga + 4, 4)
    up = 0
    if lm:
        up = sys_read(st, pm, ga + 8, 4)
    if st[ABORT] != 0:
        return R_FAULT
    gtype = (hi >> 8) & 0x1F
    gdpl = (hi >> 13) & 3
    if lm:
        if gtype != 0xE and gtype != 0xF:
            raise_exc(st, GP, gerr)
            return R_FAULT
    elif gtype == 5:
        return R_UNSUP
    elif gtype != 0xE and gtype != 0xF and gtype != 6 and gtype != 7:
        raise_exc(st, GP, gerr)
        return R_FAULT
    if kind == EV_SOFT and gdpl < st[CPL]:
        raise_exc(st, GP, gerr)
        return R_FAULT
    if (hi & 0x8000) == 0:
        raise_exc(st, NP, gerr)
        return R_FAULT
    sel = (lo >> 16) & 0xFFFF
    off = (lo & 0xFFFF) | (hi & 0xFFFF0000)
    if lm:
        off |= up << 32
    elif gtype == 6 or gtype == 7:
        off &= 0xFFFF
    # target code segment
    clo, chi, ca = read_desc_nonnull(st, pm, sel, GP, ext)
    if ca < 0:
        return R_FAULT
    cattr = desc_attr(chi)
    cdpl = (cattr >> A_DPL_SHIFT) & 3
    if (cattr & A_S) == 0 or (cattr & 8) == 0 or cdpl > st[CPL]:
        raise_exc(st, GP, (sel & 0xFFFC) + ext)
        return R_FAULT
    if (cattr & A_P) == 0:
        raise_exc(st, NP, (sel & 0xFFFC) + ext)
        return R_FAULT
    if lm and ((cattr & A_L) == 0 or (cattr & A_DB) != 0):
        raise_exc(st, GP, (sel & 0xFFFC) + ext)
        return R_FAULT
    newcpl = st[CPL] if (cattr & 4) != 0 else cdpl
    ist = (hi & 7) if lm else 0
    change = newcpl < st[CPL]
    old_ss = st[ix(SEG + 4 * SS + SEL)]
    old_sp = st[RSP]
    flags = st[RFLAGS]
    if kind == EV_EXC and vec != DB and vec != BP and vec != OF:
        flags |= F_RF                  # a fault's saved RFLAGS has RF=1 (restart without code #DB)
    if (st[RFLAGS] & F_VM) != 0:
        return R_UNSUP
    # the new stack
    ss_sel = old_ss
    ss_base = st[ix(SEG + 4 * SS + BASE)]
    ss_lim = st[ix(SEG + 4 * SS + LIMIT)]
    ss_attr = st[ix(SEG + 4 * SS + ATTR)]
    sp = old_sp
    if change or ist != 0:
        nss, nsp = tss_stack(st, pm, newcpl, ist)
        if st[ABORT] != 0:
            return R_FAULT
        sp = nsp
        if lm:
            if change:
                ss_sel = newcpl
                ss_base = 0
                ss_lim = 0xFFFFFFFF
                ss_attr = A_UNUSABLE | (newcpl << A_DPL_SHIFT) | 0x93 | A_DB | A_G
        else:
            slo, shi, sa = read_desc_nonnull(st, pm, nss, TS, ext)
            if sa < 0:
                return R_FAULT
            sattr = desc_attr(shi)
            if (nss & 3) != newcpl or ((sattr >> A_DPL_SHIFT) & 3) != newcpl or (sattr & 0x1A) != 0x12:
                raise_exc(st, TS, (nss & 0xFFFC) + ext)
                return R_FAULT
            if (sattr & A_P) == 0:
                raise_exc(st, SS_, (nss & 0xFFFC) + ext)
                return R_FAULT
            ss_sel = nss
            ss_base = desc_base(slo, shi)
            ss_lim = desc_limit(slo, shi)
            ss_attr = sattr | 1
    if lm:
        psz = 8
        sp &= ~0xF
        spm = -1
    else:
        psz = 4 if (gtype & 8) != 0 else 2
        spm = 0xFFFFFFFF if (ss_attr & A_DB) != 0 else 0xFFFF
    push_ss = lm or change
    cs_now = st[ix(SEG + 4 * CS + SEL)]
    n = 3
    if push_ss:
        n = 5
    errc = has_error_code(vec) and kind == EV_EXC and err >= 0
    if errc:
        n += 1
    vals = (old_ss, old_sp, flags, cs_now, st[RIP], err)
    first = 0 if push_ss else 2
    last = 6 if errc else 5
    for k in range(first, last):
        sp = (sp - psz) & spm
        if not lm and sp + psz - 1 > ss_lim:
            raise_exc(st, SS_, ext)
            return R_FAULT
        v = vals[k]
        if psz == 2:
            v &= 0xFFFF
        elif psz == 4:
            v &= 0xFFFFFFFF
        sys_write(st, pm, ss_base + sp, psz, v)
        if st[ABORT] != 0:
            return R_FAULT
    # commit
    if (chi & 0x100) == 0:
        sys_write(st, pm, ca + 4, 4, chi | 0x100)
    seg_set(st, CS, (sel & 0xFFFC) | newcpl, desc_base(clo, chi), desc_limit(clo, chi), cattr | 1)
    if change or (lm and ist != 0):
        if change:
            seg_set(st, SS, ss_sel, ss_base, ss_lim, ss_attr)
    if spm == -1:
        st[RSP] = sp
    else:
        st[RSP] = (st[RSP] & ~spm) | sp if not change else sp & spm
    st[RFLAGS] &= ~(F_TF | F_NT | F_RF | F_VM)
    if (gtype & 1) == 0:
        st[RFLAGS] &= ~F_IF
    st[RIP] = off
    update_mode(st)
    return R_OK


@njit
def deliver_event(st, pm, vec, err, kind):
    """Deliver one event (the return address is st[RIP]).  Handles #DF and triple fault.
    Returns 0, EXIT_SHUTDOWN, or EXIT_INTERNAL_ERROR."""
    depth = 0
    while True:
        st[ABORT] = 0
        st[EXC_VEC] = -1
        st[EXC_ERR] = -1
        if st[PROT] == 0:
            r = deliver_real(st, pm, vec)
        else:
            r = deliver_prot(st, pm, vec, err, kind)
        if r == R_OK:
            st[ix(STAT + ST_EXC)] += 1
            return 0
        if r == R_UNSUP or st[EXIT_PENDING] != 0:
            st[ABORT] = 0
            st[EXC_VEC] = -1
            return EXIT_INTERNAL_ERROR
        v2 = st[EXC_VEC]
        e2 = st[EXC_ERR]
        st[ABORT] = 0
        depth += 1
        if vec == DF or depth > 3:
            st[ix(STAT + ST_TRIPLE)] += 1
            st[EXC_VEC] = -1
            return EXIT_SHUTDOWN
        c1 = exc_class(vec)
        c2 = exc_class(v2)
        if kind == EV_EXC and ((c1 == 1 and c2 == 1) or (c1 == 2 and (c2 == 1 or c2 == 2))):
            vec = DF
            err = 0
            st[ix(STAT + ST_DF)] += 1
        else:
            vec = v2
            err = e2
        kind = EV_EXC
