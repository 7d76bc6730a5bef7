"""The fast path: executes translated blocks (blocks.py, uops.py) with lazy flags, in front
of the per-instruction interpreter (run.step_loop), which stays the reference.

run() calls fast_run() only when nothing would make step_loop return S_SPECIAL or need an
event check between instructions: no guest debugging, TF clear, no DR7 breakpoints, no
interrupt shadow, no completion pending, no event queued.  fast_run() stops
  - after `limit` instructions (blocks are cut anywhere: retire counts are exact),
  - when an event shows up between blocks (FS_EVENT),
  - before an instruction it cannot do exactly (FS_SLOW): not translated, a memory access
    that is not a TLB hit on plain host RAM with the permissions (and for a write TLBF_HOSTW
    and TLBF_D), a segment limit/type or canonical problem, a page crossing, a branch target
    outside CS.  One exception: a plain store into a coalesced MMIO zone with room in the
    ring is appended to the ring here, as the slow path would (nothing else happens there).  Nothing of that instruction has happened; the slow path then runs it (and
    faults or exits precisely).
Flags are lazy inside fast_run (the last flag-setting operation, its size, operands,
result and for INC/DEC the carry it keeps) and are written to RFLAGS before returning.
A store into the bytes of the block being executed ends the block after that instruction.
"""
from .jit import njit, njit_inline, njit_linked_inline, ix
from .layout import *  # noqa: F401,F403
from .alu import add_op, sub_op, logic_flags, inc_dec, alu, cond
from .hostptr import load8, load16, load32, load64, store8, store16, store32, store64
from .blocks import block_slot, block_valid, block_build
from .physmem import coalesce
from .uops import (UK_MOV_RR, UK_MOV_RI, UK_LOAD, UK_STORE, UK_STORE_I, UK_ALU_RR, UK_ALU_RI,
                   UK_ALU_RM, UK_ALU_MR, UK_ALU_MI, UK_INC_R, UK_INC_M, UK_LEA, UK_MOVX_R,
                   UK_MOVX_M, UK_JCC, UK_JMP, UK_PUSH, UK_POP, UK_CALL, UK_RET, OP_TEST)

FS_LIMIT = 0      # limit instructions retired
FS_EVENT = 1      # an event is queued (checked between blocks)
FS_SLOW = 2       # the instruction at RIP needs the slow path

# lazy flag kinds
LF_NONE, LF_ADD, LF_SUB, LF_LOGIC, LF_INC, LF_DEC = 0, 1, 2, 3, 4, 5


@njit_inline
def fmsk(size):
    if size == 8:
        return -1
    return (1 << (8 * size)) - 1


@njit_inline
def fsext(v, size):
    if size == 8:
        return v
    s = 64 - 8 * size
    return (v << s) >> s


@njit_inline
def near_target(nrip, rel, size, mode64, cslim):
    """(target, ok) of a relative JMP/Jcc/CALL with operand size ``size``; ok is False when
    the target is not canonical or past the CS limit (the slow path raises the #GP)."""
    tgt = nrip + rel
    if size == 2:
        tgt &= 0xFFFF
    elif size == 4:
        tgt &= 0xFFFFFFFF
    if mode64 != 0:
        return tgt, ((tgt << 16) >> 16) == tgt
    return tgt, tgt <= cslim


@njit_inline
def fult(a, b):
    return (a ^ (-0x8000000000000000)) < (b ^ (-0x8000000000000000))


@njit_linked_inline
def hload(a, size):
    if size == 4:
        return load32(a)
    if size == 1:
        return load8(a)
    if size == 2:
        return load16(a)
    return load64(a)


@njit_linked_inline
def hstore(a, size, v):
    if size == 4:
        store32(a, v)
    elif size == 1:
        store8(a, v)
    elif size == 2:
        store16(a, v)
    else:
        store64(a, v)


@njit_inline
def rget(st, r, size):
    if size == 4:
        return st[ix(r)] & 0xFFFFFFFF
    if size == 8:
        return st[ix(r)]
    if size == 2:
        return st[ix(r)] & 0xFFFF
    if r >= 32:
        return (st[ix(r - 32)] >> 8) & 0xFF
    return st[ix(r)] & 0xFF


@njit_inline
def rset(st, r, size, v):
    if size == 4:
        st[ix(r)] = v & 0xFFFFFFFF
    elif size == 8:
        st[ix(r)] = v
    elif size == 2:
        st[ix(r)] = (st[ix(r)] & ~0xFFFF) | (v & 0xFFFF)
    elif r >= 32:
        st[ix(r - 32)] = (st[ix(r - 32)] & ~0xFF00) | ((v & 0xFF) << 8)
    else:
        st[ix(r)] = (st[ix(r)] & ~0xFF) | (v & 0xFF)


@njit_linked_inline
def uop_ea(st, u, nrip):
    off = st[ix(u + U_DISP)]
    base = st[ix(u + U_BASE)]
    if base >= 0:
        off += st[ix(base)]
    elif base == -2:
        off += nrip
    idx = st[ix(u + U_IDX)]
    if idx >= 0:
        off += st[ix(idx)] << st[ix(u + U_SC)]
    asz = st[ix(u + U_ASZ)]
    if asz == 4:
        return off & 0xFFFFFFFF
    if asz == 2:
        return off & 0xFFFF
    return off


@njit
def seg_prepare(st, sg, mode64, prot):
    """FSEG for segment sg: its base and read/write limits as the fast path checks them
    (-1: that access takes the slow path: unusable, wrong type, expand-down)."""
    b = SEG + 4 * sg
    f = FSEG + 3 * sg
    if mode64 != 0:
        st[ix(f)] = st[ix(b + BASE)] if sg >= FS else 0
        st[ix(f + 1)] = 0
        st[ix(f + 2)] = 0
    else:
        attr = st[ix(b + ATTR)]
        rl = st[ix(b + LIMIT)]
        wl = rl
        if (attr & 0x1C) == 0x14:
            rl = -1
            wl = -1
        if prot != 0:
            t = attr & 0xA
            if (attr & A_UNUSABLE) != 0:
                rl = -1
                wl = -1
            if t != 2:
                wl = -1
            if t == 8:
                rl = -1
        st[ix(f)] = st[ix(b + BASE)]
        st[ix(f + 1)] = rl
        st[ix(f + 2)] = wl
    return 1 << sg


@njit_linked_inline
def host_addr(st, seg, off, size, write, mode64, need, forbid):
    """Host address for a size-byte access at seg:off when it is a plain TLB hit on host RAM
    with the permissions (need/forbid TLB flags) and no segment problem; -1 otherwise.
    FSEG of seg must be prepared (seg_prepare)."""
    f = FSEG + 3 * seg
    if mode64 != 0:
        lin = off + st[ix(f)]
        if ((lin << 16) >> 16) != lin:
            return -1
    else:
        if off + size - 1 > st[ix(f + 1 + write)]:
            return -1
        lin = (st[ix(f)] + off) & 0xFFFFFFFF
    o = lin & 0xFFF
    if o + size > 0x1000:
        return -1
    e = TLB + 4 * ((lin >> 12) & (TLB_N - 1))
    if st[ix(e)] != ((lin & ~0xFFF) | 1):
        return -1
    fl = st[ix(e + 3)]
    if (fl & need) != need or (fl & forbid) != 0:
        return -1
    h = st[ix(e + 2)]
    if h < 0:
        return -1
    return h + o


@njit
def mmio_coalesced(st, pm, seg, off, size, v, mode64, need, forbid):
    """A plain store at seg:off that the slow path would turn into a coalesced MMIO write
    (TLB hit with the permissions on a page outside every memslot, the write inside a
    coalesced zone, room in the ring): append it and return True.  False, with nothing
    changed, otherwise.  FSEG of seg must be prepared."""
    f = FSEG + 3 * seg
    if mode64 != 0:
        lin = off + st[ix(f)]
        if ((lin << 16) >> 16) != lin:
            return False
    else:
        if off + size - 1 > st[ix(f + 2)]:
            return False
        lin = (st[ix(f)] + off) & 0xFFFFFFFF
    o = lin & 0xFFF
    if o + size > 0x1000:
        return False
    e = TLB + 4 * ((lin >> 12) & (TLB_N - 1))
    if st[ix(e)] != ((lin & ~0xFFF) | 1) or st[ix(e + 2)] >= 0:
        return False
    fl = st[ix(e + 3)]
    if (fl & need) != need or (fl & forbid) != 0:
        return False
    return coalesce(st, pm, st[ix(e + 1)] + o, size, v, 0)


@njit_inline
def lazy_cf(st, lk, lsz, la, lb, lr, lc):
    """CF of the lazy state (for INC/DEC, which keep it)."""
    if lk == LF_NONE:
        return st[RFLAGS] & F_CF
    if lk == LF_ADD:
        return 1 if fult(lr, la & fmsk(lsz)) else 0
    if lk == LF_SUB:
        m = fmsk(lsz)
        return 1 if fult(la & m, lb & m) else 0
    if lk == LF_LOGIC:
        return 0
    return lc


@njit
def materialize(st, lk, lsz, la, lb, lr, lc):
    """Write the status flags of the lazy state to RFLAGS (the slow path's own functions)."""
    if lk == LF_ADD:
        add_op(st, la, lb, 0, lsz)
    elif lk == LF_SUB:
        sub_op(st, la, lb, 0, lsz)
    elif lk == LF_LOGIC:
        logic_flags(st, lr, lsz)
    elif lk == LF_INC or lk == LF_DEC:
        st[RFLAGS] = (st[RFLAGS] & ~F_CF) | lc
        inc_dec(st, la, lk == LF_DEC, lsz)


@njit_inline
def lazy_cond_ok(cc, lk):
    """Can condition cc be evaluated from lazy state lk without materializing?"""
    c = cc >> 1
    if c == 2 or c == 4:
        return True
    if lk == LF_SUB and (c == 1 or c == 3 or c == 6 or c == 7):
        return True
    return False


@njit_inline
def lazy_cond(cc, lk, lsz, la, lb, lr):
    c = cc >> 1
    if c == 2:
        r = lr == 0
    elif c == 4:
        r = ((lr >> (8 * lsz - 1)) & 1) != 0
    else:
        m = fmsk(lsz)
        a = la & m
        b = lb & m
        if c == 1:
            r = fult(a, b)
        elif c == 3:
            r = fult(a, b) or a == b
        elif c == 6:
            r = fsext(a, lsz) < fsext(b, lsz)
        else:
            r = fsext(a, lsz) <= fsext(b, lsz)
    if cc & 1:
        return not r
    return r


@njit_linked_inline
def alu_lazy(st, op, a, b, size, lk, lsz, la, lb, lr, lc):
    """One ALU op (0..7, 8 test) on a, b (a masked): (result, new lazy state)."""
    m = fmsk(size)
    b &= m
    if op == 0:
        r = (a + b) & m
        return r, LF_ADD, size, a, b, r, 0
    if op == 5 or op == 7:
        r = (a - b) & m
        return r, LF_SUB, size, a, b, r, 0
    if op == 1:
        r = a | b
        return r, LF_LOGIC, size, a, b, r, 0
    if op == 4 or op == OP_TEST:
        r = a & b
        return r, LF_LOGIC, size, a, b, r, 0
    if op == 6:
        r = a ^ b
        return r, LF_LOGIC, size, a, b, r, 0
    # ADC / SBB read CF: exact flags through the slow path's alu()
    materialize(st, lk, lsz, la, lb, lr, lc)
    r = alu(st, op, a, b, size)
    return r, LF_NONE, size, a, b, r, 0


@njit
def fast_run(st, pm, limit):
    """Run translated blocks from CS:RIP until limit instructions retired, an event, or an
    instruction for the slow path.  Returns (retired, FS_*)."""
    mode64 = st[MODE64]
    prot = st[PROT]
    csb = SEG + 4 * CS
    csd = 1 if (st[ix(csb + ATTR)] & A_DB) != 0 else 0
    cpl = st[CPL]
    mode = mode64 | (csd << 1) | (prot << 2) | (cpl << 3)
    if mode64 != 0:
        ripmask = -1
    elif csd != 0 or prot != 0:
        ripmask = 0xFFFFFFFF
    else:
        ripmask = 0xFFFF
    csbase = st[ix(csb + BASE)]
    cslim = st[ix(csb + LIMIT)]
    # a block must end inside CS and before rip wraps (blocks.block_build stops there too)
    blim = cslim if cslim < ripmask - 1 else ripmask - 1
    xflag = TLBF_XU if cpl == 3 else TLBF_XS
    rneed = 0
    wneed = TLBF_HOSTW | TLBF_D
    forbid = 0
    if (st[CR0] & 0x80000000) != 0:
        if cpl == 3:
            rneed = TLBF_U
            wneed |= TLBF_U | TLBF_W
        else:
            if (st[CR0] & 0x10000) != 0:
                wneed |= TLBF_W
            if (st[CR4] & (1 << 21)) != 0 and (st[RFLAGS] & F_AC) == 0:
                forbid = TLBF_U
    if mode64 != 0:
        spm = -1
    elif (st[ix(SEG + 4 * SS + ATTR)] & A_DB) != 0:
        spm = 0xFFFFFFFF
    else:
        spm = 0xFFFF
    rip = st[RIP] & ripmask
    lk = LF_NONE
    lsz = 1
    la = 0
    lb = 0
    lr = 0
    lc = 0
    done = 0
    hits = 0
    segok = 0          # bit per segment: its FSEG slots are prepared for this run
    status = FS_LIMIT
    b = -1             # the block just run, when it may be re-entered without a lookup
    brip = 0
    chk = 0
    while done < limit:
        # events (queued by another thread: an irqfd, a kick) are looked at between blocks;
        # on a block chained to itself, every 64th pass
        if b < 0 or rip != brip or chk == 0:
            chk = 64
            if done > 0 and (st[PEND_EXC] >= 0 or st[PEND_NMI] != 0 or st[PEND_IRQ] >= 0
                             or st[IRQ_LINE] >= 0 or st[REQ_IRQ_WIN] != 0):
                status = FS_EVENT
                break
        chk -= 1
        if b < 0 or rip != brip:
            # ---- block lookup ----
            if mode64 != 0:
                lin = rip
                if ((lin << 16) >> 16) != lin:
                    status = FS_SLOW
                    break
            else:
                lin = (csbase + rip) & 0xFFFFFFFF
            e = TLB + 4 * ((lin >> 12) & (TLB_N - 1))
            if st[ix(e)] != ((lin & ~0xFFF) | 1) or (st[ix(e + 3)] & xflag) == 0 or st[ix(e + 2)] < 0:
                status = FS_SLOW
                break
            hits += 1
            pgoff = lin & 0xFFF
            ha = st[ix(e + 2)] + pgoff
            b = block_slot(ha)
            if not block_valid(st, b, ha, pgoff, mode):
                block_build(st, b, ha, pgoff, rip, mode, cslim, ripmask)
            if st[ix(b + BK_N)] == 0 or (mode64 == 0 and rip + st[ix(b + BK_LEN)] - 1 > blim):
                b = -1
                status = FS_SLOW
                break
            brip = rip
        bhost = st[ix(b + BK_HOST)]
        bend = bhost + st[ix(b + BK_LEN)]
        nfull = st[ix(b + BK_N)]
        n = nfull
        slow = False
        smc = False
        if n > limit - done:
            n = limit - done
        while True:
            i = 0
            while i < n:
                u = b + BK_U + i * UOP_W
                k = st[ix(u + U_K)]
                size = st[ix(u + U_SZ)]
                nrip = (rip + st[ix(u + U_LEN)]) & ripmask
                if k == UK_INC_R:
                    r = st[ix(u + U_R)]
                    a = rget(st, r, size)
                    c = lazy_cf(st, lk, lsz, la, lb, lr, lc)
                    m = fmsk(size)
                    if st[ix(u + U_OP)] == 0:
                        res = (a + 1) & m
                        lk = LF_INC
                    else:
                        res = (a - 1) & m
                        lk = LF_DEC
                    lsz = size
                    la = a
                    lr = res
                    lc = c
                    rset(st, r, size, res)
                elif k == UK_JCC:
                    cc = st[ix(u + U_OP)]
                    if lk == LF_NONE:
                        t = cond(st, cc)
                    elif lazy_cond_ok(cc, lk):
                        t = lazy_cond(cc, lk, lsz, la, lb, lr)
                    else:
                        materialize(st, lk, lsz, la, lb, lr, lc)
                        lk = LF_NONE
                        t = cond(st, cc)
                    if t:
                        tgt, ok = near_target(nrip, st[ix(u + U_IMM)], size, mode64, cslim)
                        if not ok:
                            slow = True
                            break
                        nrip = tgt
                elif k == UK_MOV_RR:
                    rset(st, st[ix(u + U_R)], size, rget(st, st[ix(u + U_RM)], size))
                elif k == UK_MOV_RI:
                    rset(st, st[ix(u + U_R)], size, st[ix(u + U_IMM)])
                elif k == UK_ALU_RR or k == UK_ALU_RI:
                    r = st[ix(u + U_R)]
                    src = rget(st, st[ix(u + U_RM)], size) if k == UK_ALU_RR else st[ix(u + U_IMM)]
                    op = st[ix(u + U_OP)]
                    res, lk, lsz, la, lb, lr, lc = alu_lazy(st, op, rget(st, r, size), src, size,
                                                            lk, lsz, la, lb, lr, lc)
                    if op != 7 and op != OP_TEST:
                        rset(st, r, size, res)
                elif k == UK_LOAD or k == UK_ALU_RM or k == UK_MOVX_M:
                    ssz = st[ix(u + U_SSZ)] if k == UK_MOVX_M else size
                    sg = st[ix(u + U_SEG)]
                    if ((segok >> sg) & 1) == 0:
                        segok |= seg_prepare(st, sg, mode64, prot)
                    h = host_addr(st, sg, uop_ea(st, u, nrip), ssz, 0, mode64, rneed, forbid)
                    if h < 0:
                        slow = True
                        break
                    hits += 1
                    v = hload(h, ssz)
                    r = st[ix(u + U_R)]
                    if k == UK_LOAD:
                        rset(st, r, size, v)
                    elif k == UK_MOVX_M:
                        if st[ix(u + U_OP)] != 0:
                            v = fsext(v, ssz)
                        rset(st, r, size, v)
                    else:
                        op = st[ix(u + U_OP)]
                        res, lk, lsz, la, lb, lr, lc = alu_lazy(st, op, rget(st, r, size), v, size,
                                                                lk, lsz, la, lb, lr, lc)
                        if op != 7 and op != OP_TEST:
                            rset(st, r, size, res)
                elif k == UK_STORE or k == UK_STORE_I:
                    sg = st[ix(u + U_SEG)]
                    if ((segok >> sg) & 1) == 0:
                        segok |= seg_prepare(st, sg, mode64, prot)
                    off = uop_ea(st, u, nrip)
                    v = rget(st, st[ix(u + U_R)], size) if k == UK_STORE else st[ix(u + U_IMM)]
                    h = host_addr(st, sg, off, size, 1, mode64, wneed, forbid)
                    if h < 0:
                        # a store into a coalesced MMIO zone with room in the ring: appended
                        # here exactly as the slow path would (physmem.coalesce), no exit
                        if not mmio_coalesced(st, pm, sg, off, size, v, mode64,
                                              wneed & ~TLBF_HOSTW, forbid):
                            slow = True
                            break
                        hits += 1
                    else:
                        hits += 1
                        hstore(h, size, v)
                        if h < bend and h + size > bhost:
                            smc = True
                elif k == UK_ALU_MR or k == UK_ALU_MI or k == UK_INC_M:
                    op = st[ix(u + U_OP)]
                    wr = 0 if (k != UK_INC_M and (op == 7 or op == OP_TEST)) else 1
                    sg = st[ix(u + U_SEG)]
                    if ((segok >> sg) & 1) == 0:
                        segok |= seg_prepare(st, sg, mode64, prot)
                    h = host_addr(st, sg, uop_ea(st, u, nrip), size, wr, mode64,
                                  wneed if wr else rneed, forbid)
                    if h < 0:
                        slow = True
                        break
                    hits += 1
                    a = hload(h, size)
                    if k == UK_INC_M:
                        # as UK_INC_R's arm: one shared inlined helper measured 5-8% slower
                        # in the tight loop (interleaved A/B), so both stay written out
                        c = lazy_cf(st, lk, lsz, la, lb, lr, lc)
                        m = fmsk(size)
                        if op == 0:
                            res = (a + 1) & m
                            lk = LF_INC
                        else:
                            res = (a - 1) & m
                            lk = LF_DEC
                        lsz = size
                        la = a
                        lr = res
                        lc = c
                    else:
                        src = rget(st, st[ix(u + U_R)], size) if k == UK_ALU_MR else st[ix(u + U_IMM)]
                        res, lk, lsz, la, lb, lr, lc = alu_lazy(st, op, a, src, size,
                                                                lk, lsz, la, lb, lr, lc)
                    if wr:
                        hits += 1          # the slow path translates twice
                        hstore(h, size, res)
                        if h < bend and h + size > bhost:
                            smc = True
                elif k == UK_LEA:
                    rset(st, st[ix(u + U_R)], size, uop_ea(st, u, nrip) & fmsk(size))
                elif k == UK_MOVX_R:
                    ssz = st[ix(u + U_SSZ)]
                    v = rget(st, st[ix(u + U_RM)], ssz)
                    if st[ix(u + U_OP)] != 0:
                        v = fsext(v, ssz)
                    rset(st, st[ix(u + U_R)], size, v)
                elif k == UK_JMP:
                    tgt, ok = near_target(nrip, st[ix(u + U_IMM)], size, mode64, cslim)
                    if not ok:
                        slow = True
                        break
                    nrip = tgt
                elif k == UK_PUSH or k == UK_CALL:
                    if k == UK_CALL:
                        tgt, ok = near_target(nrip, st[ix(u + U_IMM)], size, mode64, cslim)
                        if not ok:
                            slow = True
                            break
                        v = nrip
                    elif st[ix(u + U_OP)] == 0:
                        v = rget(st, st[ix(u + U_R)], size)
                        tgt = nrip
                    else:
                        v = st[ix(u + U_IMM)]
                        tgt = nrip
                    sp = (st[RSP] - size) & spm
                    if ((segok >> SS) & 1) == 0:
                        segok |= seg_prepare(st, SS, mode64, prot)
                    h = host_addr(st, SS, sp, size, 1, mode64, wneed, forbid)
                    if h < 0:
                        slow = True
                        break
                    hits += 1
                    hstore(h, size, v)
                    st[RSP] = (st[RSP] & ~spm) | sp
                    nrip = tgt
                    if h < bend and h + size > bhost:
                        smc = True
                elif k == UK_POP or k == UK_RET:
                    sp = st[RSP] & spm
                    if ((segok >> SS) & 1) == 0:
                        segok |= seg_prepare(st, SS, mode64, prot)
                    h = host_addr(st, SS, sp, size, 0, mode64, rneed, forbid)
                    if h < 0:
                        slow = True
                        break
                    v = hload(h, size)
                    if k == UK_RET:
                        if mode64 != 0:
                            if ((v << 16) >> 16) != v:
                                slow = True
                                break
                        elif v > cslim:
                            slow = True
                            break
                        nrip = v
                        sp = sp + size + st[ix(u + U_IMM)]
                    else:
                        sp = sp + size
                    hits += 1
                    st[RSP] = (st[RSP] & ~spm) | (sp & spm)
                    if k == UK_POP:
                        rset(st, st[ix(u + U_R)], size, v)
                # UK_NOP: nothing
                rip = nrip
                done += 1
                if smc:
                    break
                i += 1
                if st[ix(u + U_FUSE)] != 0 and i < n:
                    # the Jcc after a register ALU op / INC / DEC (blocks.block_build), here
                    # without another dispatch; lk is never LF_NONE after those ops
                    u += UOP_W
                    nrip = (rip + st[ix(u + U_LEN)]) & ripmask
                    cc = st[ix(u + U_OP)]
                    if lazy_cond_ok(cc, lk):
                        t = lazy_cond(cc, lk, lsz, la, lb, lr)
                    else:
                        materialize(st, lk, lsz, la, lb, lr, lc)
                        lk = LF_NONE
                        t = cond(st, cc)
                    if t:
                        size = st[ix(u + U_SZ)]
                        tgt, ok = near_target(nrip, st[ix(u + U_IMM)], size, mode64, cslim)
                        if not ok:
                            slow = True
                            break
                        nrip = tgt
                    rip = nrip
                    done += 1
                    i += 1
            if slow or smc or rip != brip or chk <= 0 or n != nfull or limit - done < nfull:
                break
            # the block branches to its own start: run it again without the lookup
            chk -= 1
        if slow:
            status = FS_SLOW
            break
        if smc:
            b = -1
    if lk != LF_NONE:
        materialize(st, lk, lsz, la, lb, lr, lc)
    st[RIP] = rip
    st[ix(STAT + ST_TLB_HIT)] += hits
    st[ix(STAT + ST_INSNS)] += done
    st[FAST_INSNS] += done
    if status == FS_SLOW:
        st[FAST_SLOW] += 1
    return done, status
