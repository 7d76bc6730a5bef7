"""Segment registers: loads in real and protected mode, descriptor parsing, CPL and mode.

Real mode (and the base/selector of a real-mode load) keeps the cached limit and
attributes, so big real mode works after returning from protected mode.
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .mmu import raise_exc
from .access import sys_read, sys_write


@njit
def update_mode(st):
    cs_attr = st[ix(SEG + 4 * CS + ATTR)]
    st[PROT] = st[CR0] & 1
    st[MODE64] = 1 if (st[EFER] & 0x400) != 0 and (cs_attr & A_L) != 0 else 0
    if st[PROT] == 0:
        st[CPL] = 0
    else:
        st[CPL] = (cs_attr >> A_DPL_SHIFT) & 3
        if (st[RFLAGS] & F_VM) != 0:
            st[CPL] = 3


@njit
def desc_attr(hi):
    return ((hi >> 8) & 0xFF) | ((hi >> 8) & 0xF000)


@njit
def desc_base(lo, hi):
    return ((lo >> 16) & 0xFFFF) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


@njit
def desc_limit(lo, hi):
    lim = (lo & 0xFFFF) | (hi & 0xF0000)
    if (hi & 0x800000) != 0:
        lim = (lim << 12) | 0xFFF
    return lim


@njit
def desc_addr(st, sel):
    """Linear address of the descriptor for sel, or -1 if outside the table limit."""
    idx = sel & 0xFFF8
    if (sel & 4) != 0:
        if (st[ix(SEG + 4 * LDTR + ATTR)] & A_UNUSABLE) != 0 or idx + 7 > st[ix(SEG + 4 * LDTR + LIMIT)]:
            return -1
        return st[ix(SEG + 4 * LDTR + BASE)] + idx
    if idx + 7 > st[GDTR_LIMIT]:
        return -1
    return st[GDTR_BASE] + idx


@njit
def read_desc(st, pm, sel):
    """(lo, hi, address) of the descriptor; raises #GP(sel) if outside the table."""
    a = desc_addr(st, sel)
    if a < 0:
        raise_exc(st, GP, sel & 0xFFFC)
        return 0, 0, -1
    lo = sys_read(st, pm, a, 4)
    hi = sys_read(st, pm, a + 4, 4)
    return lo, hi, a


@njit
def read_desc_nonnull(st, pm, sel, vec, err):
    """read_desc for a selector that must not be null: a null one raises vec(err) (#GP(0)
    for a far branch's target, #TS for a stack taken from the TSS, #GP(ext) for a gate's
    CS).  Returns (lo, hi, address); address < 0 after a fault."""
    if (sel & 0xFFFC) == 0:
        raise_exc(st, vec, err)
        return 0, 0, -1
    return read_desc(st, pm, sel)


@njit
def set_accessed(st, pm, a, hi):
    if (hi & 0x100) == 0:
        sys_write(st, pm, a + 4, 4, hi | 0x100)


@njit
def seg_set(st, seg, sel, base, limit, attr):
    b = SEG + 4 * seg
    st[ix(b + SEL)] = sel & 0xFFFF
    st[ix(b + BASE)] = base
    st[ix(b + LIMIT)] = limit
    st[ix(b + ATTR)] = attr


@njit
def seg_set_real(st, seg, sel):
    b = SEG + 4 * seg
    st[ix(b + SEL)] = sel & 0xFFFF
    st[ix(b + BASE)] = (sel & 0xFFFF) << 4
    if (st[RFLAGS] & F_VM) != 0:
        st[ix(b + LIMIT)] = 0xFFFF
        st[ix(b + ATTR)] = 0xF3


@njit
def load_data_seg(st, pm, seg, sel):
    """MOV/POP/LxS to DS ES FS GS SS.  Returns False after raising a fault."""
    sel &= 0xFFFF
    if st[PROT] == 0 or (st[RFLAGS] & F_VM) != 0:
        seg_set_real(st, seg, sel)
        return True
    cpl = st[CPL]
    if (sel & 0xFFFC) == 0:
        if seg == SS and not (st[MODE64] != 0 and cpl != 3 and (sel & 3) == cpl):
            raise_exc(st, GP, 0)
            return False
        b = SEG + 4 * seg
        st[ix(b + SEL)] = sel
        st[ix(b + ATTR)] = A_UNUSABLE | (st[ix(b + ATTR)] & (3 << A_DPL_SHIFT)) if seg == SS else A_UNUSABLE
        if st[MODE64] == 0:
            st[ix(b + BASE)] = 0
            st[ix(b + LIMIT)] = 0
        return True
    lo, hi, a = read_desc(st, pm, sel)
    if a < 0:
        return False
    attr = desc_attr(hi)
    t = attr & 0xF
    dpl = (attr >> A_DPL_SHIFT) & 3
    rpl = sel & 3
    err = sel & 0xFFFC
    if (attr & A_S) == 0:
        raise_exc(st, GP, err)
        return False
    if seg == SS:
        if rpl != cpl or dpl != cpl or (t & 0xA) != 2:
            raise_exc(st, GP, err)
            return False
        if (attr & A_P) == 0:
            raise_exc(st, SS_, err)
            return False
    else:
        if (t & 0xA) == 8:          # execute-only code
            raise_exc(st, GP, err)
            return False
        if (t & 0xC) != 0xC:        # data or non-conforming code
            if dpl < cpl or dpl < rpl:
                raise_exc(st, GP, err)
                return False
        if (attr & A_P) == 0:
            raise_exc(st, NP, err)
            return False
    set_accessed(st, pm, a, hi)
    if st[ABORT] != 0:
        return False
    seg_set(st, seg, sel, desc_base(lo, hi), desc_limit(lo, hi), attr | 1)
    return True


@njit
def load_cs_checked(st, pm, sel, target_cpl, is_ret):
    """Validate a code-segment selector for a far JMP/CALL (is_ret=0) or RET/IRET (1) and
    load CS.  Returns 1 on success, 0 after a fault, -1 for a system descriptor (gate/TSS:
    not supported, the caller reports an emulation failure)."""
    sel &= 0xFFFF
    lo, hi, a = read_desc_nonnull(st, pm, sel, GP, 0)
    if a < 0:
        return 0
    attr = desc_attr(hi)
    err = sel & 0xFFFC
    if (attr & A_S) == 0:
        return -1
    if (attr & 8) == 0:
        raise_exc(st, GP, err)
        return 0
    dpl = (attr >> A_DPL_SHIFT) & 3
    rpl = sel & 3
    cpl = st[CPL]
    if is_ret:
        if rpl < cpl:
            raise_exc(st, GP, err)
            return 0
        if (attr & 4) != 0:
            if dpl > rpl:
                raise_exc(st, GP, err)
                return 0
        elif dpl != rpl:
            raise_exc(st, GP, err)
            return 0
        newcpl = rpl
    else:
        if (attr & 4) != 0:
            if dpl > cpl:
                raise_exc(st, GP, err)
                return 0
        elif rpl > cpl or dpl != cpl:
            raise_exc(st, GP, err)
            return 0
        newcpl = cpl
    if (attr & A_P) == 0:
        raise_exc(st, NP, err)
        return 0
    if (st[EFER] & 0x400) != 0 and (attr & A_L) != 0 and (attr & A_DB) != 0:
        raise_exc(st, GP, err)
        return 0
    set_accessed(st, pm, a, hi)
    if st[ABORT] != 0:
        return 0
    seg_set(st, CS, (sel & 0xFFFC) | newcpl, desc_base(lo, hi), desc_limit(lo, hi), attr | 1)
    update_mode(st)
    return 1


@njit
def load_cs_desc(st, pm, sel, cpl):
    """Load CS from the descriptor table without privilege checks (interrupt gates)."""
    lo, hi, a = read_desc(st, pm, sel)
    if a < 0:
        return False
    attr = desc_attr(hi)
    if (attr & A_S) == 0 or (attr & 8) == 0:
        raise_exc(st, GP, sel & 0xFFFC)
        return False
    if (attr & A_P) == 0:
        raise_exc(st, NP, sel & 0xFFFC)
        return False
    seg_set(st, CS, (sel & 0xFFFC) | cpl, desc_base(lo, hi), desc_limit(lo, hi), attr | 1)
    update_mode(st)
    return True


@njit
def invalidate_data_segs(st):
    """After a privilege drop (RET/IRET to outer level): data segments the new CPL may not
    use become null."""
    cpl = st[CPL]
    for s in (ES, DS, FS, GS):
        b = SEG + 4 * s
        attr = st[ix(b + ATTR)]
        if (attr & A_UNUSABLE) != 0:
            continue
        dpl = (attr >> A_DPL_SHIFT) & 3
        if ((attr & 8) == 0 or (attr & 4) == 0) and dpl < cpl:
            st[ix(b + SEL)] = 0
            st[ix(b + ATTR)] = A_UNUSABLE
