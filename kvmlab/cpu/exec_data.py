"""Executors for data movement: MOV forms, MOVZX/MOVSX/MOVSXD, LEA, XCHG, stack
operations, CMPXCHG/XADD/CMPXCHG8B/16B, segment loads, and miscellaneous one-offs
(HLT, BOUND, XLAT, CPUID, RDTSC, BSWAP, NOPs, x87 escapes)."""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .alu import msk, sext, sub_op, add_op, setf, szp
from .access import (get_reg, set_reg, ea, rd, wr, rm_read, rm_write, push, pop, push_at,
                     pop_at, set_sp, sp_mask, stack_size, check_wr, addr_mask)
from .mmu import raise_exc
from .segments import load_data_seg
from .optable import FORM_EG, FORM_GE, FORM_EI, FORM_RI, FORM_AO, FORM_OA
from .exec_alu import cpuid_bit


@njit
def x_mov(st, pm):
    d = D
    form = st[ix(d + D_SUB)] & 0x70
    size = st[ix(d + D_OSZ)]
    if form == FORM_EG:
        rm_write(st, pm, size, get_reg(st, st[ix(d + D_REG)], size))
    elif form == FORM_GE:
        v = rm_read(st, pm, size)
        if st[ABORT] == 0:
            set_reg(st, st[ix(d + D_REG)], size, v)
    elif form == FORM_EI:
        rm_write(st, pm, size, st[ix(d + D_IMM)])
    elif form == FORM_RI:
        set_reg(st, st[ix(d + D_RM)], size, st[ix(d + D_IMM)])
    elif form == FORM_AO:
        off = st[ix(d + D_IMM)] & addr_mask(st)
        v = rd(st, pm, st[ix(d + D_SEG)], off, size)
        if st[ABORT] == 0:
            set_reg(st, RAX, size, v)
    else:
        off = st[ix(d + D_IMM)] & addr_mask(st)
        wr(st, pm, st[ix(d + D_SEG)], off, size, get_reg(st, RAX, size))


@njit
def x_movx(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if sub == 4:
        if st[MODE64] == 0:
            # ARPL Ew, Gw
            if st[PROT] == 0:
                raise_exc(st, UD, -1)
                return
            dst = rm_read(st, pm, 2)
            if st[ABORT] != 0:
                return
            src = get_reg(st, st[ix(d + D_REG)], 2)
            if (dst & 3) < (src & 3):
                rm_write(st, pm, 2, (dst & ~3) | (src & 3))
                st[RFLAGS] |= F_ZF
            else:
                st[RFLAGS] &= ~F_ZF
            return
        v = rm_read(st, pm, 4)
        if st[ABORT] == 0:
            set_reg(st, st[ix(d + D_REG)], size, sext(v, 4))
        return
    ssz = 1 if (sub & 1) == 0 else 2
    v = rm_read(st, pm, ssz)
    if st[ABORT] != 0:
        return
    if sub >= 2:
        v = sext(v, ssz)
    set_reg(st, st[ix(d + D_REG)], size, v & msk(size))


@njit
def x_lea(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    set_reg(st, st[ix(d + D_REG)], size, ea(st) & msk(size))


@njit
def x_xchg(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    if st[ix(d + D_SUB)] == 1:
        r = st[ix(d + D_RM)]
        if r == 0:
            return          # NOP / PAUSE
        a = get_reg(st, RAX, size)
        set_reg(st, RAX, size, get_reg(st, r, size))
        set_reg(st, r, size, a)
        return
    r = st[ix(d + D_REG)]
    g = get_reg(st, r, size)
    if st[ix(d + D_MOD)] == 3:
        rr = st[ix(d + D_RM)]
        v = get_reg(st, rr, size)
        set_reg(st, rr, size, g)
        set_reg(st, r, size, v)
        return
    seg = st[ix(d + D_SEG)]
    off = ea(st)
    v = rd(st, pm, seg, off, size)
    if st[ABORT] != 0:
        return
    wr(st, pm, seg, off, size, g)
    if st[ABORT] == 0:
        set_reg(st, r, size, v)


@njit
def x_push(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if sub == 0:
        v = get_reg(st, st[ix(d + D_RM)], size)
    elif sub == 1:
        v = st[ix(d + D_IMM)] & msk(size)
    elif sub == 2:
        v = rm_read(st, pm, size)
        if st[ABORT] != 0:
            return
    else:
        v = st[ix(SEG + 4 * (sub - 16) + SEL)]
    push(st, pm, v, size)


@njit
def x_pop(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if sub == 0:
        v = pop(st, pm, size)
        if st[ABORT] == 0:
            set_reg(st, st[ix(d + D_RM)], size, v)
        return
    if sub == 2:
        v = pop(st, pm, size)
        if st[ABORT] != 0:
            return
        rm_write(st, pm, size, v)     # address computed after the pop (SDM)
        return
    seg = sub - 16
    v, nsp = pop_at(st, pm, st[RSP], size)
    if st[ABORT] != 0:
        return
    if load_data_seg(st, pm, seg, v & 0xFFFF):
        set_sp(st, nsp)
        if seg == SS:
            st[SHADOW_NEW] = 1


@njit
def popf_value(st, v, size):
    """New RFLAGS for POPF/IRET image v of size bytes at the current CPL/IOPL."""
    f = st[RFLAGS]
    mask = F_STATUS | F_TF | F_DF | F_NT | F_AC | F_ID
    cpl = st[CPL]
    iopl = (f >> 12) & 3
    if st[PROT] == 0 or cpl == 0:
        mask |= F_IOPL | F_IF
    elif cpl <= iopl:
        mask |= F_IF
    if size == 2:
        mask &= 0xFFFF
    return ((f & ~mask) | (v & mask) | 2) & ~F_RF


@njit
def x_stack(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if sub == 0:      # PUSHA
        sp = st[RSP]
        osp = get_reg(st, RSP, size)
        for r in range(8):
            v = osp if r == RSP else get_reg(st, r, size)
            sp = push_at(st, pm, sp, v, size)
            if st[ABORT] != 0:
                return
        set_sp(st, sp)
    elif sub == 1:    # POPA
        sp = st[RSP]
        for k in range(8):
            r = 7 - k
            v, sp = pop_at(st, pm, sp, size)
            if st[ABORT] != 0:
                return
            if r != RSP:
                set_reg(st, r, size, v)
        set_sp(st, sp)
    elif sub == 2:    # PUSHF
        push(st, pm, st[RFLAGS] & ~(F_RF | F_VM) & msk(size), size)
    elif sub == 3:    # POPF
        v = pop(st, pm, size)
        if st[ABORT] == 0:
            st[RFLAGS] = popf_value(st, v, size)
    elif sub == 4:    # ENTER
        alloc = st[ix(d + D_IMM)] & 0xFFFF
        level = st[ix(d + D_IMM2)] & 31
        m = sp_mask(st)
        bp_reg = get_reg(st, RBP, size)
        sp = push_at(st, pm, st[RSP], bp_reg, size)
        if st[ABORT] != 0:
            return
        frame = sp
        if level > 0:
            bp = st[RBP] & m
            for _ in range(level - 1):
                bp = (bp - size) & m
                v = rd(st, pm, SS, bp, size)
                if st[ABORT] != 0:
                    return
                sp = push_at(st, pm, sp, v, size)
                if st[ABORT] != 0:
                    return
            sp = push_at(st, pm, sp, frame, size)
            if st[ABORT] != 0:
                return
        nsp = (sp - alloc) & m
        # the final stack pointer must be writable (SDM: #SS if it is not)
        if alloc != 0:
            check_wr(st, pm, SS, nsp, 1)
        if st[ABORT] != 0:
            return
        set_reg(st, RBP, size, frame)
        set_sp(st, nsp)
    elif sub == 5:    # LEAVE
        m = sp_mask(st)
        sp = st[RBP] & m
        v, nsp = pop_at(st, pm, sp, size)
        if st[ABORT] != 0:
            return
        set_sp(st, nsp)
        set_reg(st, RBP, size, v)


@njit
def x_atomic(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if sub == 2:
        # CMPXCHG8B / CMPXCHG16B
        if (st[ix(d + D_REX)] & 8) != 0:
            seg = st[ix(d + D_SEG)]
            off = ea(st)
            if (off & 15) != 0:
                raise_exc(st, GP, 0)
                return
            lo = rd(st, pm, seg, off, 8)
            hi = rd(st, pm, seg, off + 8, 8)
            if st[ABORT] != 0:
                return
            if lo == st[RAX] and hi == st[RDX]:
                wr(st, pm, seg, off, 8, st[RBX])
                wr(st, pm, seg, off + 8, 8, st[RCX])
                st[RFLAGS] |= F_ZF
            else:
                wr(st, pm, seg, off, 8, lo)
                wr(st, pm, seg, off + 8, 8, hi)
                if st[ABORT] != 0:
                    return
                st[RAX] = lo
                st[RDX] = hi
                st[RFLAGS] &= ~F_ZF
            return
        seg = st[ix(d + D_SEG)]
        off = ea(st)
        v = rd(st, pm, seg, off, 8)
        if st[ABORT] != 0:
            return
        cmpv = (st[RAX] & 0xFFFFFFFF) | ((st[RDX] & 0xFFFFFFFF) << 32)
        if v == cmpv:
            wr(st, pm, seg, off, 8, (st[RBX] & 0xFFFFFFFF) | ((st[RCX] & 0xFFFFFFFF) << 32))
            st[RFLAGS] |= F_ZF
        else:
            wr(st, pm, seg, off, 8, v)
            if st[ABORT] != 0:
                return
            st[RAX] = v & 0xFFFFFFFF
            st[RDX] = (v >> 32) & 0xFFFFFFFF
            st[RFLAGS] &= ~F_ZF
        return
    r = st[ix(d + D_REG)]
    dst = rm_read(st, pm, size)
    if st[ABORT] != 0:
        return
    src = get_reg(st, r, size)
    if sub == 0:
        acc = get_reg(st, RAX, size)
        sub_op(st, acc, dst, 0, size)
        if acc == dst:
            rm_write(st, pm, size, src)
        else:
            # a memory destination is written back with its own value (the locked cycle
            # always writes); a register destination is left alone -- AMD silicon keeps the
            # upper half of a 32-bit register in 64-bit mode (measured against /dev/kvm at
            # CPL3; QEMU/unicorn zero-extend it).  Then the accumulator is loaded.
            if st[ix(d + D_MOD)] != 3:
                rm_write(st, pm, size, dst)
                if st[ABORT] != 0:
                    return
            set_reg(st, RAX, size, dst)
    else:
        s = add_op(st, dst, src, 0, size)
        if st[ix(d + D_MOD)] == 3:
            set_reg(st, r, size, dst)
            rm_write(st, pm, size, s)
        else:
            rm_write(st, pm, size, s)
            if st[ABORT] == 0:
                set_reg(st, r, size, dst)


@njit
def x_movseg(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    reg = st[ix(d + D_REG)] & 7
    if sub == 0:
        if reg > 5:
            raise_exc(st, UD, -1)
            return
        v = st[ix(SEG + 4 * reg + SEL)]
        if st[ix(d + D_MOD)] == 3:
            set_reg(st, st[ix(d + D_RM)], size, v)
        else:
            rm_write(st, pm, 2, v)
        return
    if sub == 1:
        if reg > 5 or reg == CS:
            raise_exc(st, UD, -1)
            return
        v = rm_read(st, pm, 2)
        if st[ABORT] != 0:
            return
        if load_data_seg(st, pm, reg, v) and reg == SS:
            st[SHADOW_NEW] = 1
        return
    # LES LSS LDS LFS LGS: sub 2 3 5 6 7 -> ES SS DS FS GS
    if sub == 2:
        s = ES
    elif sub == 3:
        s = SS
    elif sub == 5:
        s = DS
    elif sub == 6:
        s = FS
    else:
        s = GS
    seg = st[ix(d + D_SEG)]
    off = ea(st)
    v = rd(st, pm, seg, off, size)
    sel = rd(st, pm, seg, (off + size) & addr_mask(st), 2)
    if st[ABORT] != 0:
        return
    if load_data_seg(st, pm, s, sel):
        set_reg(st, st[ix(d + D_REG)], size, v)
        if s == SS:
            st[SHADOW_NEW] = 1


@njit
def cpuid_lookup(st, leaf, sub):
    n = st[CPUID_COUNT]
    for i in range(n):
        e = CPUID + 8 * i
        if st[ix(e)] == leaf and ((st[ix(e + 2)] & 1) == 0 or st[ix(e + 1)] == sub):
            return st[ix(e + 3)], st[ix(e + 4)], st[ix(e + 5)], st[ix(e + 6)]
    return 0, 0, 0, 0


@njit
def x_misc(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if sub == 0:          # HLT
        if st[CPL] != 0:
            raise_exc(st, GP, 0)
            return
        st[HALTED] = 1
        st[EXIT_PENDING] = EXIT_HLT
        st[EXIT_REASON] = EXIT_HLT
    elif sub == 1:        # BOUND
        idx = sext(get_reg(st, st[ix(d + D_REG)], size), size)
        seg = st[ix(d + D_SEG)]
        off = ea(st)
        lo = sext(rd(st, pm, seg, off, size), size)
        hi = sext(rd(st, pm, seg, (off + size) & addr_mask(st), size), size)
        if st[ABORT] != 0:
            return
        if idx < lo or idx > hi:
            raise_exc(st, BR, -1)
    elif sub == 2:        # WAIT
        if (st[CR0] & 0xA) == 0xA:
            raise_exc(st, NM, -1)
    elif sub == 3:        # XLAT
        off = (get_reg(st, RBX, st[ix(d + D_ASZ)]) + (st[RAX] & 0xFF)) & addr_mask(st)
        v = rd(st, pm, st[ix(d + D_SEG)], off, 1)
        if st[ABORT] == 0:
            set_reg(st, RAX, 1, v)
    elif sub == 4:        # multi-byte NOP, hint NOPs, ENDBR
        return
    elif sub == 5:        # RDTSC
        if (st[CR4] & 4) != 0 and st[CPL] != 0 and st[PROT] != 0:
            raise_exc(st, GP, 0)
            return
        t = st[M_TSC] + st[ix(STAT + ST_INSNS)]
        st[RAX] = t & 0xFFFFFFFF
        st[RDX] = (t >> 32) & 0xFFFFFFFF
    elif sub == 6:        # CPUID
        a, b, c, dd = cpuid_lookup(st, st[RAX] & 0xFFFFFFFF, st[RCX] & 0xFFFFFFFF)
        st[RAX] = a & 0xFFFFFFFF
        st[RBX] = b & 0xFFFFFFFF
        st[RCX] = c & 0xFFFFFFFF
        st[RDX] = dd & 0xFFFFFFFF
    elif sub == 7:        # BSWAP
        r = st[ix(d + D_RM)]
        if size == 2:
            set_reg(st, r, 2, 0)          # undefined; Intel and AMD give 0 for the 16-bit form
            return
        v = get_reg(st, r, size)
        res = 0
        for i in range(size):
            res |= ((v >> (8 * i)) & 0xFF) << (8 * (size - 1 - i))
        set_reg(st, r, size, res)
    elif sub == 8:        # 0F AE group
        reg = st[ix(d + D_REG)] & 7
        if st[ix(d + D_MOD)] == 3:
            if st[ix(d + D_REP)] == 2 and reg <= 3:
                # RDFSBASE RDGSBASE WRFSBASE WRGSBASE
                if st[MODE64] == 0 or (st[CR4] & 0x10000) == 0 or cpuid_bit(st, 7, 0, 1, 0) == 0:
                    raise_exc(st, UD, -1)
                    return
                s = FS if (reg & 1) == 0 else GS
                if reg < 2:
                    set_reg(st, st[ix(d + D_RM)], size, st[ix(SEG + 4 * s + BASE)] & msk(size))
                else:
                    v = get_reg(st, st[ix(d + D_RM)], size)
                    if ((v << 16) >> 16) != v:
                        raise_exc(st, GP, 0)
                        return
                    st[ix(SEG + 4 * s + BASE)] = v
                return
            if reg >= 5 and st[ix(d + D_REP)] == 0:
                return            # LFENCE MFENCE SFENCE
            st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
            st[ABORT] = 1
            return
        if reg == 7 and st[ix(d + D_REP)] == 0:
            return                # CLFLUSH
        st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
        st[ABORT] = 1


@njit
def x_x87(st, pm):
    """x87 escapes: #NM when CR0.EM or CR0.TS; otherwise an emulation failure, unless
    st[X87_NOP] asks for the "FPU state not modelled" behaviour (the memory operand of a
    D8 form is read for its faults, integer state untouched) used by the sst286 run."""
    if (st[CR0] & 0xC) != 0:
        raise_exc(st, NM, -1)
        return
    if st[X87_NOP] == 0 or st[ix(D + D_OPC)] != 0xD8:
        st[EXIT_PENDING] = EXIT_INTERNAL_ERROR
        st[ABORT] = 1
        return
    if st[ix(D + D_MOD)] != 3:
        rd(st, pm, st[ix(D + D_SEG)], ea(st), 4)
