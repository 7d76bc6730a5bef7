"""Segmented and linear guest-memory accesses, registers and operands.

seg:offset -> segment checks (limit, type, canonical) -> linear -> TLB/page walk ->
physical -> memslot.  Every function that can fault sets st[ABORT]; callers check it
before changing any state, so faulting instructions are precise.
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .mmu import tlb_entry, raise_exc, ACC_W, ACC_U, ACC_X
from .physmem import host_load, host_store, phys_read, phys_write, mmio_write, find_slot, mark_dirty
from .alu import msk


# ---- registers ----

@njit
def get_reg(st, r, size):
    if size == 1:
        if r >= 4 and r < 8 and st[ix(D + D_REX)] == 0:
            return (st[ix(r - 4)] >> 8) & 0xFF
        return st[ix(r)] & 0xFF
    if size == 2:
        return st[ix(r)] & 0xFFFF
    if size == 4:
        return st[ix(r)] & 0xFFFFFFFF
    return st[ix(r)]


@njit
def set_reg(st, r, size, v):
    if size == 1:
        if r >= 4 and r < 8 and st[ix(D + D_REX)] == 0:
            st[ix(r - 4)] = (st[ix(r - 4)] & ~0xFF00) | ((v & 0xFF) << 8)
        else:
            st[ix(r)] = (st[ix(r)] & ~0xFF) | (v & 0xFF)
    elif size == 2:
        st[ix(r)] = (st[ix(r)] & ~0xFFFF) | (v & 0xFFFF)
    elif size == 4:
        st[ix(r)] = v & 0xFFFFFFFF
    else:
        st[ix(r)] = v


# ---- linear accesses ----

@njit
def acc_user(st):
    return ACC_U if st[CPL] == 3 else 0


@njit
def lin_mask(st, lin):
    if st[MODE64] == 0:
        return lin & 0xFFFFFFFF
    return lin


@njit
def lin_read1(st, pm, lin, size, acc):
    e = tlb_entry(st, pm, lin, acc)
    if e < 0:
        return 0
    h = st[ix(e + 2)]
    if h >= 0:
        return host_load(h + (lin & 0xFFF), size)
    return phys_read(st, pm, st[ix(e + 1)] + (lin & 0xFFF), size)


@njit
def lin_read(st, pm, lin, size, acc):
    if (lin & 0xFFF) + size <= 0x1000:
        return lin_read1(st, pm, lin, size, acc)
    v = 0
    for i in range(size):
        b = lin_read1(st, pm, lin_mask(st, lin + i), 1, acc)
        if st[ABORT] != 0:
            return 0
        v |= b << (8 * i)
    return v


@njit
def write_piece(st, pm, e, lin, size, v):
    off = lin & 0xFFF
    if (st[ix(e + 3)] & TLBF_HOSTW) != 0:
        host_store(st[ix(e + 2)] + off, size, v)
        return
    gpa = st[ix(e + 1)] + off
    b = find_slot(pm, gpa)
    if b < 0 or (pm[ix(b + PS_FLAGS)] & SLOT_READONLY) != 0:
        mmio_write(st, pm, gpa, size, v)
        return
    host_store(pm[ix(b + PS_HOST)] + gpa - pm[ix(b + PS_GPA)], size, v)
    mark_dirty(pm, b, gpa)


@njit
def lin_write(st, pm, lin, size, v, acc):
    acc |= ACC_W
    if (lin & 0xFFF) + size <= 0x1000:
        e = tlb_entry(st, pm, lin, acc)
        if e < 0:
            return
        write_piece(st, pm, e, lin, size, v)
        return
    n1 = 0x1000 - (lin & 0xFFF)
    lin2 = lin_mask(st, lin + n1)
    e1 = tlb_entry(st, pm, lin, acc)
    if e1 < 0:
        return
    e2 = tlb_entry(st, pm, lin2, acc)
    if e2 < 0:
        return
    e1 = tlb_entry(st, pm, lin, acc)   # e2's fill may have evicted nothing; re-fetch cheaply
    write_piece(st, pm, e1, lin, n1, v & msk(n1) if n1 < 8 else v)
    write_piece(st, pm, e2, lin2, size - n1, v >> (8 * n1))


# ---- segments ----

@njit
def seg_fault(st, seg):
    raise_exc(st, SS_ if seg == SS else GP, 0)


@njit
def seg_lin(st, seg, off, size, kind):
    """Linear address of seg:off for an access of size bytes; kind 0 read, 1 write, 2 exec.
    Raises #GP/#SS on a limit, type or canonical violation."""
    b = SEG + 4 * seg
    if st[MODE64] != 0:
        lin = off
        if seg >= FS:
            lin = off + st[ix(b + BASE)]
        if ((lin << 16) >> 16) != lin:
            seg_fault(st, seg)
        return lin
    attr = st[ix(b + ATTR)]
    if st[PROT] != 0:
        if (attr & A_UNUSABLE) != 0:
            seg_fault(st, seg)
            return 0
        t = attr & 0xF
        if kind == 1:
            if (t & 0xA) != 2:
                seg_fault(st, seg)
                return 0
        elif kind == 0:
            if (t & 0xA) == 8:
                seg_fault(st, seg)
                return 0
    lim = st[ix(b + LIMIT)]
    if (attr & 0x1C) == 0x14:
        upper = 0xFFFFFFFF if (attr & A_DB) != 0 else 0xFFFF
        if off <= lim or off + size - 1 > upper:
            seg_fault(st, seg)
            return 0
    elif off + size - 1 > lim:
        seg_fault(st, seg)
        return 0
    return (st[ix(b + BASE)] + off) & 0xFFFFFFFF


@njit
def rd(st, pm, seg, off, size):
    lin = seg_lin(st, seg, off, size, 0)
    if st[ABORT] != 0:
        return 0
    watch_check(st, lin, size, 0)
    return lin_read(st, pm, lin, size, acc_user(st))


@njit
def wr(st, pm, seg, off, size, v):
    lin = seg_lin(st, seg, off, size, 1)
    if st[ABORT] != 0:
        return
    watch_check(st, lin, size, 1)
    lin_write(st, pm, lin, size, v, acc_user(st))


@njit
def check_wr(st, pm, seg, off, size):
    """Fault now if a later write of size bytes at seg:off would fault (no write)."""
    lin = seg_lin(st, seg, off, size, 1)
    if st[ABORT] != 0:
        return
    tlb_entry(st, pm, lin, acc_user(st) | ACC_W)
    if (lin & 0xFFF) + size > 0x1000:
        tlb_entry(st, pm, lin_mask(st, lin + size - 1), acc_user(st) | ACC_W)


@njit
def watch_check(st, lin, size, write):
    """Data breakpoints (DR7 RW=01 write, RW=11 read/write) of the guest or the debugger."""
    dr7 = st[DR7]
    g = st[GDBG_CTRL]
    use_hw = (g & 0x20001) == 0x20001
    if use_hw:
        dr7 = st[ix(GDBG_DR + 7)]
    if (dr7 & 0xFF) == 0:
        return
    for i in range(4):
        if ((dr7 >> (2 * i)) & 3) == 0:
            continue
        rw = (dr7 >> (16 + 4 * i)) & 3
        if rw == 1 and write == 0:
            continue
        if rw == 0 or rw == 2:
            continue
        ln = ((dr7 >> (18 + 4 * i)) & 3) + 1
        if ln == 3:
            ln = 8
        a = st[ix(GDBG_DR + i)] if use_hw else st[ix(DR0 + i)]
        a &= ~(ln - 1)
        if lin <= a + ln - 1 and a <= lin + size - 1:
            st[WATCH_HIT] |= 1 << i


# ---- effective addresses and ModRM operands ----

@njit
def ea(st):
    d = D
    base = st[ix(d + D_BASE)]
    off = st[ix(d + D_DISP)]
    if base >= 0:
        off += st[ix(base)]
    elif base == -2:
        off += st[RIP] + st[ix(d + D_LEN)]
    idx = st[ix(d + D_INDEX)]
    if idx >= 0:
        off += st[ix(idx)] << st[ix(d + D_SCALE)]
    asz = st[ix(d + D_ASZ)]
    if asz == 2:
        return off & 0xFFFF
    if asz == 4:
        return off & 0xFFFFFFFF
    return off


@njit
def rm_read(st, pm, size):
    if st[ix(D + D_MOD)] == 3:
        return get_reg(st, st[ix(D + D_RM)], size)
    return rd(st, pm, st[ix(D + D_SEG)], ea(st), size)


@njit
def rm_write(st, pm, size, v):
    if st[ix(D + D_MOD)] == 3:
        set_reg(st, st[ix(D + D_RM)], size, v)
    else:
        wr(st, pm, st[ix(D + D_SEG)], ea(st), size, v)


@njit
def addr_mask(st):
    asz = st[ix(D + D_ASZ)]
    if asz == 2:
        return 0xFFFF
    if asz == 4:
        return 0xFFFFFFFF
    return -1


# ---- stack ----

@njit
def stack_size(st):
    if st[MODE64] != 0:
        return 8
    if (st[ix(SEG + 4 * SS + ATTR)] & A_DB) != 0:
        return 4
    return 2


@njit
def sp_mask(st):
    s = stack_size(st)
    if s == 2:
        return 0xFFFF
    if s == 4:
        return 0xFFFFFFFF
    return -1


@njit
def set_sp(st, sp):
    m = sp_mask(st)
    st[RSP] = (st[RSP] & ~m) | (sp & m)


@njit
def push_at(st, pm, sp, v, size):
    """Write v below sp; returns the new sp (not yet committed to RSP)."""
    m = sp_mask(st)
    nsp = (sp - size) & m
    wr(st, pm, SS, nsp, size, v)
    return nsp


@njit
def pop_at(st, pm, sp, size):
    m = sp_mask(st)
    sp &= m
    v = rd(st, pm, SS, sp, size)
    return v, (sp + size) & m


@njit
def push(st, pm, v, size):
    sp = push_at(st, pm, st[RSP], v, size)
    if st[ABORT] == 0:
        set_sp(st, sp)


@njit
def pop(st, pm, size):
    v, sp = pop_at(st, pm, st[RSP], size)
    if st[ABORT] == 0:
        set_sp(st, sp)
    return v


# ---- system-table reads (supervisor, no segment checks) ----

@njit
def sys_read(st, pm, lin, size):
    return lin_read(st, pm, lin_mask(st, lin), size, 0)


@njit
def sys_write(st, pm, lin, size, v):
    lin_write(st, pm, lin_mask(st, lin), size, v, 0)


@njit
def snapshot(st):
    """Commit point: what an aborted instruction is rolled back to (GPRs, RIP, RFLAGS)."""
    for i in range(18):
        st[ix(SAVE + i)] = st[ix(i)]


@njit
def rollback(st):
    for i in range(18):
        st[ix(i)] = st[ix(SAVE + i)]
