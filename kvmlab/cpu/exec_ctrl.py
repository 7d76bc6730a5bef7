"""Executors for control transfer: Jcc, JMP/CALL/RET near and far, LOOP/JCXZ, INT n,
INT3, INTO, INT1, IRET, SYSCALL/SYSRET/SYSENTER/SYSEXIT."""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .alu import msk, sext, cond
from .access import (get_reg, set_reg, ea, rd, rm_read, push_at, pop_at, set_sp, sp_mask,
                     addr_mask, lin_mask, sys_read, sys_write)
from .mmu import raise_exc
from .segments import (load_cs_checked, seg_set, seg_set_real, update_mode, load_data_seg,
                       read_desc_nonnull, desc_attr, desc_base, desc_limit, invalidate_data_segs,
                       desc_addr, set_accessed)
from .exceptions import deliver_event, EV_SOFT, EV_EXC, tss_stack
from .exec_data import popf_value


@njit
def branch(st, target, osz):
    """Set the next rip to target (masked to the operand size); #GP if outside CS."""
    if osz == 2:
        target &= 0xFFFF
    elif osz == 4:
        target &= 0xFFFFFFFF
    if st[MODE64] != 0:
        if ((target << 16) >> 16) != target:
            raise_exc(st, GP, 0)
            return
    elif target > st[ix(SEG + 4 * CS + LIMIT)]:
        raise_exc(st, GP, 0)
        return
    st[NEXT_RIP] = target


@njit
def x_jcc(st, pm):
    if cond(st, st[ix(D + D_SUB)]):
        branch(st, st[NEXT_RIP] + st[ix(D + D_IMM)], st[ix(D + D_OSZ)])


@njit
def x_loop(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    asz = st[ix(d + D_ASZ)]
    c = get_reg(st, RCX, asz)
    if sub == 3:
        if c == 0:
            branch(st, st[NEXT_RIP] + st[ix(d + D_IMM)], st[ix(d + D_OSZ)])
        return
    c = (c - 1) & msk(asz)
    set_reg(st, RCX, asz, c)
    take = c != 0
    if sub == 0:
        take = take and (st[RFLAGS] & F_ZF) == 0
    elif sub == 1:
        take = take and (st[RFLAGS] & F_ZF) != 0
    if take:
        branch(st, st[NEXT_RIP] + st[ix(d + D_IMM)], st[ix(d + D_OSZ)])


@njit
def gate_push(st, pm, base, lim, spm, sp, v, psz, lm, sserr):
    """Push v (psz bytes) on a stack that is not loaded yet (a call gate's stack switch)."""
    sp = (sp - psz) & spm
    if not lm and sp + psz - 1 > lim:
        raise_exc(st, SS_, sserr)
        return sp
    sys_write(st, pm, base + sp, psz, v & msk(psz))
    return sp


@njit
def call_gate(st, pm, gsel, glo, ghi, ga, is_call):
    """Far CALL/JMP through the call gate gsel (descriptor glo/ghi at ga; legacy 16/32-bit
    gates, long mode 64-bit gates).  A CALL to a more privileged non-conforming segment
    switches to the stack of that level from the TSS: legacy SS:ESP with the gate's
    parameter count copied from the old stack, long mode a null SS and RSPn; the old SS:SP,
    CS:IP are pushed there.  Returns 1 when done, 0 after a fault, -1 for a task switch."""
    lm = (st[EFER] & 0x400) != 0
    gattr = desc_attr(ghi)
    gt = gattr & 0xF
    gerr = gsel & 0xFFFC
    cpl = st[CPL]
    if lm and gt != 0xC:
        raise_exc(st, GP, gerr)
        return 0
    if gt == 1 or gt == 3 or gt == 5 or gt == 9 or gt == 0xB:
        return -1                                 # TSS / task gate: a task switch
    if gt != 4 and gt != 0xC:
        raise_exc(st, GP, gerr)
        return 0
    gdpl = (gattr >> A_DPL_SHIFT) & 3
    if gdpl < cpl or gdpl < (gsel & 3):
        raise_exc(st, GP, gerr)
        return 0
    if (gattr & A_P) == 0:
        raise_exc(st, NP, gerr)
        return 0
    tsel = (glo >> 16) & 0xFFFF
    off = (glo & 0xFFFF) | (ghi & 0xFFFF0000)
    if lm:
        if desc_addr(st, gsel + 8) < 0:          # the 16-byte gate must fit the table
            raise_exc(st, GP, gerr)
            return 0
        up_lo = sys_read(st, pm, ga + 8, 4)
        up_hi = sys_read(st, pm, ga + 12, 4)
        if st[ABORT] != 0:
            return 0
        if ((up_hi >> 8) & 0x1F) != 0:
            raise_exc(st, GP, gerr)
            return 0
        off |= up_lo << 32
    elif gt == 4:
        off &= 0xFFFF
    tlo, thi, ta = read_desc_nonnull(st, pm, tsel, GP, 0)
    if ta < 0:
        return 0
    tattr = desc_attr(thi)
    terr = tsel & 0xFFFC
    tdpl = (tattr >> A_DPL_SHIFT) & 3
    conforming = (tattr & 4) != 0
    if (tattr & A_S) == 0 or (tattr & 8) == 0 or tdpl > cpl:
        raise_exc(st, GP, terr)
        return 0
    if not is_call and not conforming and tdpl != cpl:
        raise_exc(st, GP, terr)
        return 0
    if (tattr & A_P) == 0:
        raise_exc(st, NP, terr)
        return 0
    if lm and ((tattr & A_L) == 0 or (tattr & A_DB) != 0):
        raise_exc(st, GP, terr)
        return 0
    tbase = desc_base(tlo, thi)
    tlim = desc_limit(tlo, thi)
    if not lm and off > tlim:
        raise_exc(st, GP, 0)
        return 0
    newcpl = tdpl if (is_call and not conforming) else cpl
    psz = 8 if lm else (4 if gt == 0xC else 2)
    old_cs = st[ix(SEG + 4 * CS + SEL)]
    if is_call and newcpl < cpl:
        nss, nsp = tss_stack(st, pm, newcpl, 0)
        if st[ABORT] != 0:
            return 0
        if lm:
            ss_sel = newcpl
            ss_base = 0
            ss_lim = 0xFFFFFFFF
            ss_attr = A_UNUSABLE | (newcpl << A_DPL_SHIFT) | 0x93 | A_DB | A_G
            spm = -1
        else:
            slo, shi, sa = read_desc_nonnull(st, pm, nss, TS, 0)
            if sa < 0:
                return 0
            sattr = desc_attr(shi)
            if (nss & 3) != newcpl or ((sattr >> A_DPL_SHIFT) & 3) != newcpl or (sattr & 0x1A) != 0x12:
                raise_exc(st, TS, nss & 0xFFFC)
                return 0
            if (sattr & A_P) == 0:
                raise_exc(st, SS_, nss & 0xFFFC)
                return 0
            ss_sel = nss
            ss_base = desc_base(slo, shi)
            ss_lim = desc_limit(slo, shi)
            ss_attr = sattr | 1
            spm = 0xFFFFFFFF if (ss_attr & A_DB) != 0 else 0xFFFF
        sserr = ss_sel & 0xFFFC
        old_ss = st[ix(SEG + 4 * SS + SEL)]
        old_sp = st[RSP]
        osm = sp_mask(st)
        sp = nsp & spm
        sp = gate_push(st, pm, ss_base, ss_lim, spm, sp, old_ss, psz, lm, sserr)
        if st[ABORT] == 0:
            sp = gate_push(st, pm, ss_base, ss_lim, spm, sp, old_sp, psz, lm, sserr)
        count = 0 if lm else ghi & 0x1F
        for i in range(count - 1, -1, -1):
            if st[ABORT] != 0:
                return 0
            v = rd(st, pm, SS, (old_sp + i * psz) & osm, psz)
            if st[ABORT] == 0:
                sp = gate_push(st, pm, ss_base, ss_lim, spm, sp, v, psz, lm, sserr)
        if st[ABORT] == 0:
            sp = gate_push(st, pm, ss_base, ss_lim, spm, sp, old_cs, psz, lm, sserr)
        if st[ABORT] == 0:
            sp = gate_push(st, pm, ss_base, ss_lim, spm, sp, st[NEXT_RIP], psz, lm, sserr)
        set_accessed(st, pm, ta, thi)
        if st[ABORT] != 0:
            return 0
        seg_set(st, CS, terr | newcpl, tbase, tlim, tattr | 1)
        seg_set(st, SS, ss_sel, ss_base, ss_lim, ss_attr)
        st[RSP] = sp if spm == -1 else sp & spm
        update_mode(st)
        st[NEXT_RIP] = off
        return 1
    sp = st[RSP]
    if is_call:
        sp = push_at(st, pm, sp, old_cs, psz)
        sp = push_at(st, pm, sp, st[NEXT_RIP], psz)
    if st[ABORT] != 0:
        return 0
    set_accessed(st, pm, ta, thi)
    if st[ABORT] != 0:
        return 0
    seg_set(st, CS, terr | newcpl, tbase, tlim, tattr | 1)
    if is_call:
        set_sp(st, sp)
    update_mode(st)
    st[NEXT_RIP] = off
    return 1


@njit
def far_jump(st, pm, sel, off, osz, is_call):
    """Far JMP/CALL to sel:off; for a call the return CS:IP is pushed first."""
    if st[PROT] == 0 or (st[RFLAGS] & F_VM) != 0:
        if is_call:
            sp = push_at(st, pm, st[RSP], st[ix(SEG + 4 * CS + SEL)], osz)
            sp = push_at(st, pm, sp, st[NEXT_RIP], osz)
            if st[ABORT] != 0:
                return
            set_sp(st, sp)
        seg_set_real(st, CS, sel)
        st[NEXT_RIP] = off & msk(osz)
        return
    if (sel & 0xFFFC) != 0:
        a = desc_addr(st, sel)
        if a >= 0:
            hi = sys_read(st, pm, a + 4, 4)
            if st[ABORT] != 0:
                return
            if (hi & 0x1000) == 0:        # a system descriptor: call gate (or task switch)
                lo = sys_read(st, pm, a, 4)
                if st[ABORT] == 0 and call_gate(st, pm, sel & 0xFFFF, lo, hi, a, is_call) < 0:
                    st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
                    st[ABORT] = 1
                return
    old_cs = st[ix(SEG + 4 * CS + SEL)]
    sp = st[RSP]
    if is_call:
        sp = push_at(st, pm, sp, old_cs, osz)
        sp = push_at(st, pm, sp, st[NEXT_RIP], osz)
        if st[ABORT] != 0:
            return
    # save CS in case the target check fails after loading
    b = SEG + 4 * CS
    s0, s1, s2, s3 = st[ix(b)], st[ix(b + 1)], st[ix(b + 2)], st[ix(b + 3)]
    r = load_cs_checked(st, pm, sel, 0, 0)
    if r < 0:
        st[EXIT_PENDING] = EXIT_INTERNAL_ERROR      # call gates / task switches
        st[ABORT] = 1
        return
    if r == 0:
        return
    if st[MODE64] == 0 and (osz == 2 or osz == 4):
        off &= msk(osz)
    if st[MODE64] == 0 and off > st[ix(b + LIMIT)]:
        st[ix(b)], st[ix(b + 1)], st[ix(b + 2)], st[ix(b + 3)] = s0, s1, s2, s3
        update_mode(st)
        raise_exc(st, GP, 0)
        return
    if is_call:
        set_sp(st, sp)
    st[NEXT_RIP] = off


@njit
def far_return(st, pm, osz, extra):
    sp = st[RSP]
    off, sp = pop_at(st, pm, sp, osz)
    sel, sp = pop_at(st, pm, sp, osz)
    if st[ABORT] != 0:
        return
    sel &= 0xFFFF
    if st[PROT] == 0 or (st[RFLAGS] & F_VM) != 0:
        seg_set_real(st, CS, sel)
        st[NEXT_RIP] = off & msk(osz)
        set_sp(st, sp + extra)
        return
    cpl = st[CPL]
    outer = (sel & 3) > cpl
    nsp = 0
    nss = 0
    if outer:
        sp2 = (sp + extra) & sp_mask(st)
        nsp, sp2 = pop_at(st, pm, sp2, osz)
        nss, sp2 = pop_at(st, pm, sp2, osz)
        if st[ABORT] != 0:
            return
    r = load_cs_checked(st, pm, sel, 0, 1)
    if r <= 0:
        if r < 0:
            st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
            st[ABORT] = 1
        return
    st[NEXT_RIP] = off & msk(osz) if st[MODE64] == 0 else off
    if outer:
        if not load_data_seg(st, pm, SS, nss & 0xFFFF):
            return
        set_sp(st, nsp + extra)
        invalidate_data_segs(st)
    else:
        set_sp(st, sp + extra)


@njit
def x_branch(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    osz = st[ix(d + D_OSZ)]
    if sub == 0:
        branch(st, st[NEXT_RIP] + st[ix(d + D_IMM)], osz)
    elif sub == 1:
        t = rm_read(st, pm, osz)
        if st[ABORT] == 0:
            branch(st, t, osz)
    elif sub == 2 or sub == 3:
        if sub == 2:
            t = st[NEXT_RIP] + st[ix(d + D_IMM)]
        else:
            t = rm_read(st, pm, osz)
            if st[ABORT] != 0:
                return
        sp = push_at(st, pm, st[RSP], st[NEXT_RIP], osz)
        if st[ABORT] != 0:
            return
        branch(st, t, osz)
        if st[ABORT] == 0:
            set_sp(st, sp)
    elif sub == 4:
        t, sp = pop_at(st, pm, st[RSP], osz)
        if st[ABORT] != 0:
            return
        branch(st, t, osz)
        if st[ABORT] == 0:
            set_sp(st, sp + (st[ix(d + D_IMM)] & 0xFFFF))
    elif sub == 6 or sub == 7:
        far_jump(st, pm, st[ix(d + D_IMM2)], st[ix(d + D_IMM)] & msk(osz), osz, sub == 7)
    elif sub == 8:
        far_return(st, pm, osz, st[ix(d + D_IMM)] & 0xFFFF)
    else:
        seg = st[ix(d + D_SEG)]
        off = ea(st)
        t = rd(st, pm, seg, off, osz)
        sel = rd(st, pm, seg, (off + osz) & addr_mask(st), 2)
        if st[ABORT] != 0:
            return
        far_jump(st, pm, sel, t, osz, sub == 9)


@njit
def soft_int(st, pm, vec):
    st[RIP] = st[NEXT_RIP]
    r = deliver_event(st, pm, vec, -1, EV_SOFT)
    if r != 0:
        st[RIP] = st[INSN_RIP]
        st[EXIT_PENDING] = r
        st[ABORT] = 1
        return
    st[NEXT_RIP] = st[RIP]


@njit
def x_iret(st, pm):
    osz = st[ix(D + D_OSZ)]
    if st[PROT] == 0 or (st[RFLAGS] & F_VM) != 0:
        sp = st[RSP]
        ip, sp = pop_at(st, pm, sp, osz)
        cs, sp = pop_at(st, pm, sp, osz)
        fl, sp = pop_at(st, pm, sp, osz)
        if st[ABORT] != 0:
            return
        if osz == 4 and ip > 0xFFFF and ip > st[ix(SEG + 4 * CS + LIMIT)]:
            raise_exc(st, GP, 0)
            return
        set_sp(st, sp)
        seg_set_real(st, CS, cs)
        st[RFLAGS] = popf_value(st, fl, osz) | ((fl & F_RF) if osz != 2 else 0)
        st[NEXT_RIP] = ip & msk(osz)
        st[NMI_BLOCKED] = 0
        return
    if (st[RFLAGS] & F_NT) != 0 and (st[EFER] & 0x400) == 0:
        st[EXIT_PENDING] = EXIT_INTERNAL_ERROR     # task return
        st[ABORT] = 1
        return
    sp = st[RSP]
    ip, sp = pop_at(st, pm, sp, osz)
    cs, sp = pop_at(st, pm, sp, osz)
    fl, sp = pop_at(st, pm, sp, osz)
    if st[ABORT] != 0:
        return
    cs &= 0xFFFF
    cpl = st[CPL]
    if (fl & F_VM) != 0 and cpl == 0 and osz == 4:
        st[EXIT_PENDING] = EXIT_INTERNAL_ERROR     # return to virtual-8086 mode
        st[ABORT] = 1
        return
    outer = (cs & 3) > cpl or st[MODE64] != 0
    nsp = 0
    nss = 0
    if outer:
        nsp, sp = pop_at(st, pm, sp, osz)
        nss, sp = pop_at(st, pm, sp, osz)
        if st[ABORT] != 0:
            return
    newflags = popf_value(st, fl, osz)
    if osz != 2:
        newflags |= fl & F_RF          # IRET (unlike POPF) loads RF
    r = load_cs_checked(st, pm, cs, 0, 1)
    if r <= 0:
        if r < 0:
            st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
            st[ABORT] = 1
        return
    st[RFLAGS] = newflags
    update_mode(st)
    st[NEXT_RIP] = ip if st[MODE64] != 0 else ip & msk(osz)
    if outer:
        nss &= 0xFFFF
        if (nss & 0xFFFC) == 0 and (st[EFER] & 0x400) != 0 and st[CPL] != 3:
            b = SEG + 4 * SS
            st[ix(b + SEL)] = nss
            st[ix(b + ATTR)] = A_UNUSABLE | (st[CPL] << A_DPL_SHIFT)
        elif not load_data_seg(st, pm, SS, nss):
            return
        if osz == 8 or st[MODE64] != 0:
            st[RSP] = nsp
        else:
            set_sp(st, nsp)
        if (cs & 3) > cpl:
            invalidate_data_segs(st)
    else:
        set_sp(st, sp)
    st[NMI_BLOCKED] = 0


@njit
def x_int(st, pm):
    sub = st[ix(D + D_SUB)]
    if sub == 0:
        g = st[GDBG_CTRL]
        if (g & 0x10001) == 0x10001:
            st[EXIT_REASON] = EXIT_DEBUG
            st[DBG_EXC] = BP
            st[DBG_PC] = st[INSN_LIN]
            st[DBG_DR6] = st[DR6]
            st[DBG_DR7] = st[DR7]
            st[EXIT_PENDING] = EXIT_DEBUG
            st[ABORT] = 1
            return
        soft_int(st, pm, BP)
    elif sub == 1:
        soft_int(st, pm, st[ix(D + D_IMM)] & 0xFF)
    elif sub == 2:
        if (st[RFLAGS] & F_OF) != 0:
            soft_int(st, pm, OF)
    elif sub == 3:
        x_iret(st, pm)
    else:
        # INT1 / ICEBP: #DB trap, delivered like a hardware exception
        st[RIP] = st[NEXT_RIP]
        r = deliver_event(st, pm, DB, -1, EV_EXC)
        if r != 0:
            st[RIP] = st[INSN_RIP]
            st[EXIT_PENDING] = r
            st[ABORT] = 1
            return
        st[NEXT_RIP] = st[RIP]


@njit
def flat_code(st, sel, l64, dpl):
    attr = 0xB | A_S | (dpl << A_DPL_SHIFT) | A_P | A_G
    if l64:
        attr |= A_L
    else:
        attr |= A_DB
    seg_set(st, CS, sel, 0, 0xFFFFFFFF, attr)


@njit
def flat_stack(st, sel, dpl):
    seg_set(st, SS, sel, 0, 0xFFFFFFFF, 0x3 | A_S | (dpl << A_DPL_SHIFT) | A_P | A_DB | A_G)


@njit
def x_fast_sys(st, pm):
    sub = st[ix(D + D_SUB)]
    lma = (st[EFER] & 0x400) != 0
    if sub == 0:      # SYSCALL
        if (st[EFER] & 1) == 0 or st[PROT] == 0:
            raise_exc(st, UD, -1)
            return
        star = st[M_STAR]
        sel = (star >> 32) & 0xFFFC
        if lma:
            st[RCX] = st[NEXT_RIP]
            st[R11] = st[RFLAGS] & ~F_RF
            target = st[M_LSTAR] if st[MODE64] != 0 else st[M_CSTAR]
            flat_code(st, sel, True, 0)
            flat_stack(st, (sel + 8) & 0xFFFF, 0)
            st[RFLAGS] &= ~(st[M_SFMASK] | F_RF)
            st[RFLAGS] |= 2
            update_mode(st)
            st[NEXT_RIP] = target
        else:
            st[RCX] = st[NEXT_RIP] & 0xFFFFFFFF
            flat_code(st, sel, False, 0)
            flat_stack(st, (sel + 8) & 0xFFFF, 0)
            st[RFLAGS] &= ~(F_VM | F_IF | F_RF)
            update_mode(st)
            st[NEXT_RIP] = star & 0xFFFFFFFF
    elif sub == 1:    # SYSRET
        if (st[EFER] & 1) == 0 or st[PROT] == 0:
            raise_exc(st, UD, -1)
            return
        if st[CPL] != 0:
            raise_exc(st, GP, 0)
            return
        sel = (st[M_STAR] >> 48) & 0xFFFF
        if st[ix(D + D_OSZ)] == 8:
            t = st[RCX]
            if ((t << 16) >> 16) != t:
                raise_exc(st, GP, 0)
                return
            flat_code(st, ((sel + 16) & 0xFFFC) | 3, True, 3)
        else:
            t = st[RCX] & 0xFFFFFFFF
            flat_code(st, (sel & 0xFFFC) | 3, False, 3)
        if lma:
            st[RFLAGS] = (st[R11] & 0x3C7FD7) | 2
        else:
            st[RFLAGS] |= F_IF
        flat_stack(st, ((sel + 8) & 0xFFFC) | 3, 3)
        update_mode(st)
        st[NEXT_RIP] = t
    elif sub == 2:    # SYSENTER
        cs = st[M_SYSENTER_CS] & 0xFFFC
        if st[PROT] == 0 or cs == 0:
            raise_exc(st, GP, 0)
            return
        flat_code(st, cs, lma, 0)
        flat_stack(st, (cs + 8) & 0xFFFF, 0)
        st[RFLAGS] &= ~(F_VM | F_IF | F_RF)
        update_mode(st)
        st[RSP] = st[M_SYSENTER_ESP] if lma else st[M_SYSENTER_ESP] & 0xFFFFFFFF
        st[NEXT_RIP] = st[M_SYSENTER_EIP] if lma else st[M_SYSENTER_EIP] & 0xFFFFFFFF
    else:             # SYSEXIT
        cs = st[M_SYSENTER_CS] & 0xFFFC
        if st[PROT] == 0 or cs == 0 or st[CPL] != 0:
            raise_exc(st, GP, 0)
            return
        if st[ix(D + D_OSZ)] == 8:
            flat_code(st, ((cs + 32) & 0xFFFC) | 3, True, 3)
            flat_stack(st, ((cs + 40) & 0xFFFC) | 3, 3)
            st[RSP] = st[RCX]
            t = st[RDX]
        else:
            flat_code(st, ((cs + 16) & 0xFFFC) | 3, False, 3)
            flat_stack(st, ((cs + 24) & 0xFFFC) | 3, 3)
            st[RSP] = st[RCX] & 0xFFFFFFFF
            t = st[RDX] & 0xFFFFFFFF
        update_mode(st)
        st[NEXT_RIP] = t
