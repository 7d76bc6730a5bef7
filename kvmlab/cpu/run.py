"""The entry point: run(st, pm, budget) executes until an exit condition or until budget
instructions have retired, and returns the exit code (exit data is in st).

Per instruction: events at the boundary (queued exception, NMI, KVM_INTERRUPT vector,
INTR line when IF=1 and no shadow), debugger exec breakpoints, fetch (CS limit, page walk,
memslot: a fetch from no slot is an emulation failure), decode, execute through the kind
switch, then commit (rip, shadows, TF/watchpoint traps) or roll back and deliver the fault.
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .optable import (K_INVALID, K_UD, K_UNSUP, K_ALU, K_TEST, K_INCDEC, K_UNARY, K_MULDIV,
                      K_IMUL, K_SHIFT, K_SHXD, K_MOV, K_MOVX, K_LEA, K_XCHG, K_PUSH, K_POP,
                      K_STACK, K_JCC, K_BRANCH, K_LOOP, K_SETCC, K_CMOV, K_FLAG, K_CONV, K_BCD,
                      K_STRING, K_IO, K_INT, K_MOVSEG, K_BIT, K_MISC, K_ATOMIC, K_SYS, K_FAST_SYS,
                      K_X87, K_CRDR)
from .decode import decode
from .mmu import tlb_entry, tlb_flush, raise_exc, ACC_X, ACC_U
from .access import snapshot, rollback, lin_mask
from .physmem import host_load
from .hostptr import load64
from .exceptions import deliver_event, EV_EXC, EV_EXT
from .exec_alu import (x_alu, x_test, x_incdec, x_unary, x_muldiv, x_imul, x_shift, x_shxd,
                       x_bit, x_bcd, x_conv, x_flag, x_setcc, x_cmov)
from .exec_data import (x_mov, x_movx, x_lea, x_xchg, x_push, x_pop, x_stack, x_atomic,
                        x_movseg, x_misc, x_x87)
from .exec_ctrl import x_jcc, x_branch, x_loop, x_int, x_fast_sys
from .exec_io import x_string, x_io
from .exec_sys import x_sys, x_crdr
from .fastexec import fast_run, FS_SLOW


@njit
def execute(st, pm, k):
    if k == K_MOV:
        x_mov(st, pm)
    elif k == K_ALU:
        x_alu(st, pm)
    elif k == K_JCC:
        x_jcc(st, pm)
    elif k == K_INCDEC:
        x_incdec(st, pm)
    elif k == K_TEST:
        x_test(st, pm)
    elif k == K_PUSH:
        x_push(st, pm)
    elif k == K_POP:
        x_pop(st, pm)
    elif k == K_BRANCH:
        x_branch(st, pm)
    elif k == K_LEA:
        x_lea(st, pm)
    elif k == K_LOOP:
        x_loop(st, pm)
    elif k == K_SHIFT:
        x_shift(st, pm)
    elif k == K_MOVX:
        x_movx(st, pm)
    elif k == K_XCHG:
        x_xchg(st, pm)
    elif k == K_STRING:
        x_string(st, pm)
    elif k == K_UNARY:
        x_unary(st, pm)
    elif k == K_MULDIV:
        x_muldiv(st, pm)
    elif k == K_IMUL:
        x_imul(st, pm)
    elif k == K_SHXD:
        x_shxd(st, pm)
    elif k == K_STACK:
        x_stack(st, pm)
    elif k == K_SETCC:
        x_setcc(st, pm)
    elif k == K_CMOV:
        x_cmov(st, pm)
    elif k == K_FLAG:
        x_flag(st, pm)
    elif k == K_CONV:
        x_conv(st, pm)
    elif k == K_BCD:
        x_bcd(st, pm)
    elif k == K_IO:
        x_io(st, pm)
    elif k == K_INT:
        x_int(st, pm)
    elif k == K_MOVSEG:
        x_movseg(st, pm)
    elif k == K_BIT:
        x_bit(st, pm)
    elif k == K_MISC:
        x_misc(st, pm)
    elif k == K_ATOMIC:
        x_atomic(st, pm)
    elif k == K_SYS:
        x_sys(st, pm)
    elif k == K_FAST_SYS:
        x_fast_sys(st, pm)
    elif k == K_CRDR:
        x_crdr(st, pm)
    elif k == K_X87:
        x_x87(st, pm)
    elif k == K_UNSUP:
        st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
        st[ABORT] = 1
    else:
        raise_exc(st, UD, -1)


@njit
def internal_error(st, n):
    st[EXIT_REASON] = EXIT_INTERNAL_ERROR
    st[INT_SUBERR] = 1
    if n > st[IB_N]:
        n = st[IB_N]
    if n > 15:
        n = 15
    st[INT_LEN] = n
    for i in range(15):
        st[ix(INT_BYTES + i)] = st[ix(IB + i)] if i < n else 0
    return EXIT_INTERNAL_ERROR


@njit
def fetch(st, pm, lin, start, n):
    """Fetch up to n bytes at lin into IB[start..]; returns the count fetched (stops at the
    page end), -1 after a fault, -2 when the page has no memslot."""
    e = tlb_entry(st, pm, lin, ACC_X | (ACC_U if st[CPL] == 3 else 0))
    if e < 0:
        return -1
    h = st[ix(e + 2)]
    if h < 0:
        return -2
    off = lin & 0xFFF
    m = 0x1000 - off
    if m > n:
        m = n
    a = h + off
    for i in range(m):
        st[ix(IB + start + i)] = host_load(a + i, 1)
    return m


@njit
def fetch_decode(st, pm):
    """Fetch and decode the instruction at CS:RIP.  Returns its length, 0 after a fault,
    or -EXIT for an exit (emulation failure)."""
    rip = st[RIP]
    mode64 = st[MODE64]
    if mode64:
        lin = rip
        if ((lin << 16) >> 16) != lin:
            raise_exc(st, GP, 0)
            return 0
        avail = 15
    else:
        if st[ix(SEG + 4 * CS + ATTR)] & A_DB:
            rip &= 0xFFFFFFFF
        else:
            rip &= 0xFFFF if st[PROT] == 0 else 0xFFFFFFFF
        st[RIP] = rip
        lim = st[ix(SEG + 4 * CS + LIMIT)]
        avail = lim - rip + 1
        if avail <= 0:
            raise_exc(st, GP, 0)
            return 0
        if avail > 15:
            avail = 15
        lin = (st[ix(SEG + 4 * CS + BASE)] + rip) & 0xFFFFFFFF
    st[INSN_LIN] = lin
    st[IB_N] = 0
    csd = 1 if (st[ix(SEG + 4 * CS + ATTR)] & A_DB) != 0 else 0
    mode = mode64 | (csd << 1) | (st[PROT] << 2)
    # decoded-instruction cache (only for instructions that cannot cross the page)
    off = lin & 0xFFF
    ic = -1
    ha = 0
    if off <= 0x1000 - 16 and avail == 15:
        e = TLB + 4 * ((lin >> 12) & (TLB_N - 1))
        if st[ix(e)] != ((lin & ~0xFFF) | 1) or (st[ix(e + 3)] & (TLBF_XU if st[CPL] == 3 else TLBF_XS)) == 0:
            e = tlb_entry(st, pm, lin, ACC_X | (ACC_U if st[CPL] == 3 else 0))
            if e < 0:
                return 0
        else:
            st[ix(STAT + ST_TLB_HIT)] += 1
        h = st[ix(e + 2)]
        if h >= 0:
            ha = h + off
            ic = IC + (((ha >> 4) ^ (ha >> 12) ^ ha) & (IC_N - 1)) * IC_STRIDE
            if st[ix(ic + IC_HOST)] == ha and st[ix(ic + IC_MODE)] == mode:
                n = st[ix(ic + IC_D + D_LEN)]
                w0 = load64(ha)
                if n < 8:
                    w0 &= (1 << (8 * n)) - 1
                ok = w0 == st[ix(ic + IC_W0)]
                if ok and n > 8:
                    w1 = load64(ha + 8)
                    if n < 16:
                        w1 &= (1 << (8 * (n - 8))) - 1
                    ok = w1 == st[ix(ic + IC_W1)]
                if ok:
                    for i in range(D_SIZE):
                        st[ix(D + i)] = st[ix(ic + IC_D + i)]
                    return n
    got = fetch(st, pm, lin, 0, avail)
    if got == -1:
        return 0
    if got == -2:
        return -internal_error(st, 0)
    st[IB_N] = got
    n = decode(st, mode64, csd)
    if n == 0 and got < avail:
        more = fetch(st, pm, lin_mask(st, lin + got), got, avail - got)
        if more == -1:
            return 0
        if more == -2:
            return -internal_error(st, got)
        st[IB_N] = got + more
        n = decode(st, mode64, csd)
    if n == 0:
        raise_exc(st, GP, 0)       # runs past the CS limit
        return 0
    if n < 0:
        raise_exc(st, GP, 0)       # longer than 15 bytes
        return 0
    if ic >= 0 and st[ix(D + D_KIND)] != K_UNSUP and n <= st[IB_N]:
        w0 = 0
        w1 = 0
        for i in range(n):
            if i < 8:
                w0 |= st[ix(IB + i)] << (8 * i)
            else:
                w1 |= st[ix(IB + i)] << (8 * (i - 8))
        st[ix(ic + IC_HOST)] = ha
        st[ix(ic + IC_MODE)] = mode
        st[ix(ic + IC_W0)] = w0
        st[ix(ic + IC_W1)] = w1
        for i in range(D_SIZE):
            st[ix(ic + IC_D + i)] = st[ix(D + i)]
    return n


@njit
def interruptible(st):
    return (st[RFLAGS] & F_IF) != 0 and st[SHADOW] == 0 and st[PEND_IRQ] < 0 and st[PEND_EXC] < 0


@njit
def exec_breakpoint(st, lin):
    """Debugger exec breakpoint (KVM_GUESTDBG_USE_HW_BP): DR6 bits hit, 0 none."""
    g = st[GDBG_CTRL]
    if (g & 0x20001) != 0x20001:
        return 0
    dr7 = st[ix(GDBG_DR + 7)]
    hit = 0
    for i in range(4):
        if ((dr7 >> (2 * i)) & 3) != 0 and ((dr7 >> (16 + 4 * i)) & 3) == 0:
            if st[ix(GDBG_DR + i)] == lin:
                hit |= 1 << i
    return hit


@njit
def guest_exec_breakpoint(st, lin):
    """The guest's own exec breakpoints (DR7 Ln/Gn with R/W=00 and LEN=00, as KVM's
    kvm_vcpu_check_hw_bp): DR6 B0-B3 bits hit, 0 none."""
    dr7 = st[DR7]
    hit = 0
    for i in range(4):
        if ((dr7 >> (2 * i)) & 3) != 0 and ((dr7 >> (16 + 4 * i)) & 15) == 0:
            if st[ix(DR0 + i)] == lin:
                hit |= 1 << i
    return hit


@njit
def debug_exit(st, exc, pc, dr6, dr7):
    st[EXIT_REASON] = EXIT_DEBUG
    st[DBG_EXC] = exc
    st[DBG_PC] = pc
    st[DBG_DR6] = dr6
    st[DBG_DR7] = dr7
    return EXIT_DEBUG


@njit
def cur_lin(st):
    if st[MODE64] != 0:
        return st[RIP]
    return (st[ix(SEG + 4 * CS + BASE)] + st[RIP]) & 0xFFFFFFFF


@njit
def inject(st, pm, vec, err, kind):
    r = deliver_event(st, pm, vec, err, kind)
    st[HALTED] = 0
    st[SHADOW] = 0
    if r != 0:
        if r == EXIT_INTERNAL_ERROR:
            st[EXIT_REASON] = EXIT_INTERNAL_ERROR
            st[INT_SUBERR] = 3        # KVM_INTERNAL_ERROR_DELIVERY_EV
            st[INT_LEN] = 0
        else:
            st[EXIT_REASON] = r
    return r


@njit
def run(st, pm, budget):
    st[EXIT_REASON] = 0
    st[HALTED] = 0
    # memslot changes invalidate every translation
    if st[PM_GEN_SEEN] != pm[PM_GEN]:
        tlb_flush(st, False, ST_FLUSH_SLOTS)
        st[PM_GEN_SEEN] = pm[PM_GEN]
    # MMIO writes queued by the previous instruction exit one by one
    if st[MQ_N] > 0:
        st[EXIT_REASON] = EXIT_MMIO
        st[MMIO_GPA] = st[MQ]
        st[MMIO_LEN] = st[ix(MQ + 1)]
        st[MMIO_WRITE] = 1
        v = st[ix(MQ + 2)]
        for i in range(8):
            st[ix(EXIT_DATA + i)] = (v >> (8 * i)) & 0xFF
        n = st[MQ_N] - 1
        for i in range(3 * n):
            st[ix(MQ + i)] = st[ix(MQ + 3 + i)]
        st[MQ_N] = n
        return EXIT_MMIO
    done = 0
    while True:
        # ---- events at the instruction boundary ----
        if st[PEND_EXC] >= 0:
            v = st[PEND_EXC]
            st[PEND_EXC] = -1
            r = inject(st, pm, v, -1, EV_EXC)
            if r != 0:
                return r
        if st[PEND_NMI] != 0 and st[NMI_BLOCKED] == 0 and st[SHADOW] == 0:
            st[PEND_NMI] = 0
            st[NMI_BLOCKED] = 1
            st[ix(STAT + ST_NMI)] += 1
            r = inject(st, pm, NMI, -1, EV_EXT)
            if r != 0:
                return r
        if st[PEND_IRQ] >= 0:
            v = st[PEND_IRQ]
            st[PEND_IRQ] = -1
            st[ix(STAT + ST_IRQ)] += 1
            r = inject(st, pm, v, -1, EV_EXT)
            if r != 0:
                return r
        elif st[IRQ_LINE] >= 0 and (st[RFLAGS] & F_IF) != 0 and st[SHADOW] == 0:
            v = st[IRQ_LINE]
            st[IRQ_LINE] = -1
            st[IRQ_ACKED] = v
            st[ix(STAT + ST_IRQ)] += 1
            r = inject(st, pm, v, -1, EV_EXT)
            if r != 0:
                return r
        if st[REQ_IRQ_WIN] != 0 and interruptible(st):
            st[EXIT_REASON] = EXIT_IRQ_WINDOW
            return EXIT_IRQ_WINDOW
        if done >= budget:
            st[EXIT_REASON] = EXIT_BUDGET
            return EXIT_BUDGET
        limit = budget - done
        # ---- debugger exec breakpoints (then one instruction at a time) ----
        if st[GDBG_CTRL] != 0:
            if st[DBG_SKIP_HWBP] == 0:
                hit = exec_breakpoint(st, cur_lin(st))
                if hit != 0:
                    st[DBG_SKIP_HWBP] = 1
                    return debug_exit(st, DB, cur_lin(st), 0xFFFF0FF0 | hit, st[ix(GDBG_DR + 7)])
            st[DBG_SKIP_HWBP] = 0
            limit = 1
        # ---- the guest's exec breakpoints: a fault before the instruction, unless RF ----
        if (st[DR7] & 0xFF) != 0:
            if (st[RFLAGS] & F_RF) == 0:
                hit = guest_exec_breakpoint(st, cur_lin(st))
                if hit != 0:
                    st[DR6] = (st[DR6] & ~0xF) | hit
                    r = inject(st, pm, DB, -1, EV_EXC)
                    if r != 0:
                        return r
                    done += 1          # counts against the budget: a breakpoint on the
                    continue           # handler itself must not spin without returning
            limit = 1
        # ---- the fast path (translated blocks), when nothing needs step_loop's care ----
        if (st[FAST_OFF] == 0 and st[GDBG_CTRL] == 0 and (st[RFLAGS] & F_TF) == 0
                and (st[DR7] & 0xFF) == 0):
            if (st[SHADOW] == 0 and st[COMP_KIND] == 0 and (st[RFLAGS] & F_RF) == 0
                    and st[PEND_EXC] < 0 and st[PEND_NMI] == 0 and st[PEND_IRQ] < 0
                    and st[IRQ_LINE] < 0 and st[REQ_IRQ_WIN] == 0):
                k, fs = fast_run(st, pm, limit)
                done += k
                if fs != FS_SLOW or done >= budget:
                    continue
            # the instruction the fast path could not do, or a shadow / RF / completion /
            # event that one slow step resolves: one instruction, then back to the checks
            limit = 1
        # ---- the hot loop ----
        k, status = step_loop(st, pm, limit)
        done += k
        if status == S_LIMIT or status == S_EVENT:
            continue
        if status == S_EXIT:
            return st[EXIT_PENDING]
        if status == S_ABORT:
            if st[EXC_VEC] >= 0:
                r = inject(st, pm, st[EXC_VEC], st[EXC_ERR], EV_EXC)
                if r != 0:
                    return r
                done += 1          # a delivered fault uses budget: a handler that faults at
                continue           # once (an exception storm) must not spin without returning
            ex = st[EXIT_PENDING]
            if ex == EXIT_INTERNAL_ERROR:
                # the bytes (a cache hit does not fetch them)
                lin = st[INSN_LIN]
                got = fetch(st, pm, lin, 0, 15)
                if got > 0 and got < 15:
                    more = fetch(st, pm, lin_mask(st, lin + got), got, 15 - got)
                    if more > 0:
                        got += more
                st[ABORT] = 0
                st[EXC_VEC] = -1
                st[IB_N] = got if got > 0 else 0
                return internal_error(st, 15)
            if ex != 0:
                st[EXIT_REASON] = ex
                return ex
            continue
        # S_SPECIAL: after an instruction that traps, exits or is being single-stepped
        tf = st[TF_PENDING]
        ex = st[EXIT_PENDING]
        if tf != 0 or st[WATCH_HIT] != 0:
            g = st[GDBG_CTRL]
            if st[WATCH_HIT] != 0 and (g & 0x20001) == 0x20001:
                return debug_exit(st, DB, cur_lin(st), 0xFFFF0FF0 | st[WATCH_HIT], st[ix(GDBG_DR + 7)])
            st[DR6] = (st[DR6] & ~0xF) | st[WATCH_HIT] | (0x4000 if tf != 0 else 0)
            r = inject(st, pm, DB, -1, EV_EXC)
            if r != 0:
                return r
        if ex != 0:
            if ex == EXIT_HLT:
                st[ix(STAT + ST_HLT)] += 1
            st[EXIT_REASON] = ex
            return ex
        if (st[GDBG_CTRL] & 3) == 3:
            return debug_exit(st, DB, cur_lin(st), 0xFFFF4FF0, 0)


S_LIMIT = 0       # the instruction limit was reached
S_ABORT = 1       # an instruction faulted or stopped for an exit (rolled back, rip on it)
S_SPECIAL = 2     # an instruction retired and needs run(): trap, exit, debugger
S_EVENT = 3       # an event is queued: back to the boundary checks
S_EXIT = 4        # fetch failed with an exit, or EXIT_LOCKED before executing (st[EXIT_PENDING])


@njit
def step_loop(st, pm, limit):
    """The hot loop: fetch (decoded-instruction cache), execute, commit, until limit
    instructions retired or something needs run()'s attention.  Returns (retired, status)."""
    done = 0
    while done < limit:
        if done > 0 and (st[PEND_EXC] >= 0 or st[PEND_NMI] != 0 or st[PEND_IRQ] >= 0
                         or st[IRQ_LINE] >= 0 or st[REQ_IRQ_WIN] != 0):
            return done, S_EVENT
        st[ABORT] = 0
        st[EXC_VEC] = -1
        st[EXC_ERR] = -1
        st[EXIT_PENDING] = 0
        st[MMIO_WR_PENDING] = 0
        st[WATCH_HIT] = 0
        st[SHADOW_NEW] = 0
        st[INSN_RIP] = st[RIP]
        snapshot(st)
        if (st[RFLAGS] & F_RF) != 0:
            st[RFLAGS] &= ~F_RF        # cleared as the instruction starts (IRET loads it again)
        tf = 0
        n = fetch_decode(st, pm)
        if n < 0:
            st[EXIT_PENDING] = -n
            return done, S_EXIT
        if n > 0:
            if pm[PM_SMP] != 0 and st[ix(D + D_MOD)] != 3 and (
                    st[ix(D + D_LOCK)] != 0 or (st[ix(D + D_KIND)] == K_XCHG and st[ix(D + D_SUB)] == 0)):
                # a locked read-modify-write while other vCPUs may run: the caller serialises it
                if st[LOCK_OK] == 0:
                    st[EXIT_PENDING] = EXIT_LOCKED
                    st[EXIT_REASON] = EXIT_LOCKED
                    if st[GDBG_CTRL] != 0:
                        st[DBG_SKIP_HWBP] = 1      # its exec breakpoints were checked already
                    return done, S_EXIT
                st[LOCK_OK] = 0
            nxt = st[RIP] + n
            if st[MODE64] == 0:
                if (st[ix(SEG + 4 * CS + ATTR)] & A_DB) != 0 or st[PROT] != 0:
                    nxt &= 0xFFFFFFFF
                else:
                    nxt &= 0xFFFF
            st[NEXT_RIP] = nxt
            tf = st[RFLAGS] & F_TF
            st[TF_PENDING] = tf
            execute(st, pm, st[ix(D + D_KIND)])
            st[COMP_KIND] = 0
        if st[ABORT] != 0:
            rollback(st)
            st[RIP] = st[INSN_RIP]
            return done, S_ABORT
        # commit
        st[RIP] = st[NEXT_RIP]
        done += 1
        st[ix(STAT + ST_INSNS)] += 1
        st[SHADOW] = st[SHADOW_NEW]
        if tf != 0 or st[WATCH_HIT] != 0 or st[EXIT_PENDING] != 0 or st[GDBG_CTRL] != 0 \
                or (st[DR7] & 0xFF) != 0:
            return done, S_SPECIAL
    return done, S_LIMIT
