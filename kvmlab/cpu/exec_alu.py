"""Executors for arithmetic, logic, shifts, bit operations, BCD, flags and conversions."""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .alu import (msk, sext, ult, shr64, szp, setf, cf, add_op, sub_op, logic_flags, alu,
                  inc_dec, cond, shift_op, umul64, udiv128)
from .access import get_reg, set_reg, ea, rd, wr, rm_read, rm_write
from .mmu import raise_exc
from .optable import FORM_EG, FORM_GE, FORM_AI, FORM_EI


@njit
def x_alu(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    op = sub & 7
    form = sub & 0x70
    size = st[ix(d + D_OSZ)]
    if form == FORM_GE:
        r = st[ix(d + D_REG)]
        src = rm_read(st, pm, size)
        if st[ABORT] != 0:
            return
        res = alu(st, op, get_reg(st, r, size), src, size)
        if op != 7:
            set_reg(st, r, size, res)
        return
    if form == FORM_AI:
        res = alu(st, op, get_reg(st, RAX, size), st[ix(d + D_IMM)], size)
        if op != 7:
            set_reg(st, RAX, size, res)
        return
    if form == FORM_EG:
        src = get_reg(st, st[ix(d + D_REG)], size)
    else:
        src = st[ix(d + D_IMM)]
    if st[ix(d + D_MOD)] == 3:
        r = st[ix(d + D_RM)]
        res = alu(st, op, get_reg(st, r, size), src, size)
        if op != 7:
            set_reg(st, r, size, res)
        return
    seg = st[ix(d + D_SEG)]
    off = ea(st)
    dst = rd(st, pm, seg, off, size)
    if st[ABORT] != 0:
        return
    res = alu(st, op, dst, src, size)
    if op != 7:
        wr(st, pm, seg, off, size, res)


@njit
def x_test(st, pm):
    d = D
    form = st[ix(d + D_SUB)] & 0x70
    size = st[ix(d + D_OSZ)]
    if form == FORM_AI:
        a = get_reg(st, RAX, size)
        b = st[ix(d + D_IMM)]
    else:
        a = rm_read(st, pm, size)
        if st[ABORT] != 0:
            return
        b = get_reg(st, st[ix(d + D_REG)], size) if form == FORM_EG else st[ix(d + D_IMM)]
    logic_flags(st, a & b, size)


@njit
def x_incdec(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    dec = (sub & 32) != 0
    size = st[ix(d + D_OSZ)]
    if (sub & 16) != 0:
        r = st[ix(d + D_RM)]
        set_reg(st, r, size, inc_dec(st, get_reg(st, r, size), dec, size))
        return
    if st[ix(d + D_MOD)] == 3:
        r = st[ix(d + D_RM)]
        set_reg(st, r, size, inc_dec(st, get_reg(st, r, size), dec, size))
        return
    seg = st[ix(d + D_SEG)]
    off = ea(st)
    v = rd(st, pm, seg, off, size)
    if st[ABORT] != 0:
        return
    wr(st, pm, seg, off, size, inc_dec(st, v, dec, size))


@njit
def x_unary(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    if st[ix(d + D_MOD)] == 3:
        seg = 0
        off = 0
        v = get_reg(st, st[ix(d + D_RM)], size)
    else:
        seg = st[ix(d + D_SEG)]
        off = ea(st)
        v = rd(st, pm, seg, off, size)
        if st[ABORT] != 0:
            return
    if st[ix(d + D_SUB)] == 0:
        res = (~v) & msk(size)
    else:
        res = sub_op(st, 0, v, 0, size)
    if st[ix(d + D_MOD)] == 3:
        set_reg(st, st[ix(d + D_RM)], size, res)
    else:
        wr(st, pm, seg, off, size, res)


@njit
def mul_flags(st, lo, over, size):
    f = szp(lo, size)
    if over:
        f |= F_CF | F_OF
    setf(st, f, F_STATUS)


@njit
def smul64(a, b):
    lo, hi = umul64(a, b)
    if a < 0:
        hi -= b
    if b < 0:
        hi -= a
    return lo, hi


@njit
def x_muldiv(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    op = st[ix(d + D_SUB)]
    src = rm_read(st, pm, size)
    if st[ABORT] != 0:
        return
    m = msk(size)
    bits = 8 * size
    if op == 0 or op == 1:
        if op == 0:
            a = get_reg(st, RAX, size)
            if size == 8:
                lo, hi = umul64(a, src)
            else:
                p = a * src
                lo = p & m
                hi = (p >> bits) & m
            over = hi != 0
        else:
            a = sext(get_reg(st, RAX, size), size)
            b = sext(src, size)
            if size == 8:
                lo, hi = smul64(a, b)
            else:
                p = a * b
                lo = p & m
                hi = (p >> bits) & m
            over = (hi & m) != ((sext(lo, size) >> 63) & m)
        if size == 1:
            set_reg(st, RAX, 2, (lo & 0xFF) | ((hi & 0xFF) << 8))
        else:
            set_reg(st, RAX, size, lo)
            set_reg(st, RDX, size, hi)
        mul_flags(st, lo, over, size)
        return
    # DIV / IDIV
    if (src & m) == 0:
        raise_exc(st, DE, -1)
        return
    if size == 1:
        lo = get_reg(st, RAX, 2) & 0xFF
        hi = (get_reg(st, RAX, 2) >> 8) & 0xFF
    else:
        lo = get_reg(st, RAX, size)
        hi = get_reg(st, RDX, size)
    if op == 2:
        if size == 8:
            if not ult(hi, src):
                raise_exc(st, DE, -1)
                return
            q, r = udiv128(hi, lo, src)
        else:
            n = (hi << bits) | lo
            if size == 4:
                # 64-bit dividend may exceed int64 range when hi >= 2^31: do it unsigned
                q, r = udiv128(0, n, src)
                if q > m or q < 0:
                    raise_exc(st, DE, -1)
                    return
            else:
                q = n // src
                r = n % src
                if q > m:
                    raise_exc(st, DE, -1)
                    return
    else:
        s = sext(src, size)
        if size == 8:
            neg_n = hi < 0
            nh = hi
            nl = lo
            if neg_n:
                nl = -lo
                nh = ~hi + (1 if lo == 0 else 0)
            ad = -s if s < 0 else s
            if not ult(nh, ad):
                raise_exc(st, DE, -1)
                return
            uq, ur = udiv128(nh, nl, ad)
            if uq < 0 and not (uq == -0x8000000000000000 and neg_n != (s < 0)):
                raise_exc(st, DE, -1)
                return
            q = -uq if neg_n != (s < 0) else uq
            r = -ur if neg_n else ur
        else:
            n = sext((hi << bits) | lo, 2 * size) if size < 4 else (sext(hi, 4) << 32) | lo
            an = -n if n < 0 else n
            ad = -s if s < 0 else s
            aq = an // ad
            ar = an % ad
            q = -aq if (n < 0) != (s < 0) else aq
            r = -ar if n < 0 else ar
            lim = 1 << (bits - 1)
            if q >= lim or q < -lim:
                raise_exc(st, DE, -1)
                return
    if size == 1:
        set_reg(st, RAX, 2, (q & 0xFF) | ((r & 0xFF) << 8))
    else:
        set_reg(st, RAX, size, q)
        set_reg(st, RDX, size, r)


@njit
def x_imul(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    src = rm_read(st, pm, size)
    if st[ABORT] != 0:
        return
    r = st[ix(d + D_REG)]
    if st[ix(d + D_SUB)] == 1:
        b = sext(st[ix(d + D_IMM)], size)
    else:
        b = sext(get_reg(st, r, size), size)
    a = sext(src, size)
    m = msk(size)
    if size == 8:
        lo, hi = smul64(a, b)
        over = hi != (lo >> 63)
    else:
        p = a * b
        lo = p & m
        over = sext(lo, size) != p
    set_reg(st, r, size, lo)
    mul_flags(st, lo, over, size)


@njit
def x_shift(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    op = sub & 7
    size = st[ix(d + D_OSZ)]
    if (sub & 16) != 0:
        cnt = 1
    elif (sub & 32) != 0:
        cnt = st[RCX] & 0xFF
    else:
        cnt = st[ix(d + D_IMM)] & 0xFF
    cnt &= 0x3F if size == 8 else 0x1F
    if st[ix(d + D_MOD)] == 3:
        r = st[ix(d + D_RM)]
        set_reg(st, r, size, shift_op(st, op, get_reg(st, r, size), cnt, size))
        return
    seg = st[ix(d + D_SEG)]
    off = ea(st)
    v = rd(st, pm, seg, off, size)
    if st[ABORT] != 0 or cnt == 0:
        return
    wr(st, pm, seg, off, size, shift_op(st, op, v, cnt, size))


@njit
def x_shxd(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    bits = 8 * size
    m = msk(size)
    if (sub & 2) != 0:
        cnt = st[RCX] & 0xFF
    else:
        cnt = st[ix(d + D_IMM)] & 0xFF
    cnt &= 0x3F if size == 8 else 0x1F
    dst = rm_read(st, pm, size)
    if st[ABORT] != 0 or cnt == 0:
        return
    src = get_reg(st, st[ix(d + D_REG)], size)
    if size == 2:
        # 16-bit: a 48-bit (dst:src:dst) rotation, as Intel and QEMU do for counts > 16
        if (sub & 1) == 0:
            w = (dst << 32) | (src << 16) | dst
            res = (w >> (32 - cnt)) & m
            c = (w >> (48 - cnt)) & 1
        else:
            w = dst | (src << 16) | (dst << 32)
            res = (w >> cnt) & m
            c = (w >> (cnt - 1)) & 1
    elif (sub & 1) == 0:
        res = ((dst << cnt) | shr64(src, bits - cnt)) & m
        c = shr64(dst, bits - cnt) & 1
    else:
        res = (shr64(dst, cnt) | (src << (bits - cnt))) & m
        c = shr64(dst, cnt - 1) & 1
    f = szp(res, size) | c
    if (((res ^ dst) >> (bits - 1)) & 1) != 0:
        f |= F_OF
    setf(st, f, F_STATUS)
    rm_write(st, pm, size, res)


@njit
def cpuid_bit(st, leaf, sub, regi, bit):
    n = st[CPUID_COUNT]
    for i in range(n):
        e = CPUID + 8 * i
        if st[ix(e)] == leaf and ((st[ix(e + 2)] & 1) == 0 or st[ix(e + 1)] == sub):
            return (st[ix(e + 3 + regi)] >> bit) & 1
    return 0


@njit
def x_bit(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    bits = 8 * size
    m = msk(size)
    if sub >= 8:
        rep = st[ix(d + D_REP)]
        src = rm_read(st, pm, size)
        if st[ABORT] != 0:
            return
        r = st[ix(d + D_REG)]
        src &= m
        if sub == 10:
            if rep != 2 or cpuid_bit(st, 1, 0, 2, 23) == 0:
                raise_exc(st, UD, -1)
                return
            c = 0
            x = src
            for _ in range(64):
                if x == 0:
                    break
                c += x & 1
                x = shr64(x, 1)
            set_reg(st, r, size, c)
            setf(st, F_ZF if src == 0 else 0, F_STATUS)
            return
        lz = sub == 9 and rep == 2 and cpuid_bit(st, 0x80000001, 0, 2, 5) != 0
        tz = sub == 8 and rep == 2 and cpuid_bit(st, 7, 0, 1, 3) != 0
        if lz or tz:
            if src == 0:
                n = bits
            elif tz:
                n = 0
                while ((src >> n) & 1) == 0:
                    n += 1
            else:
                n = 0
                while ((src >> (bits - 1 - n)) & 1) == 0:
                    n += 1
            set_reg(st, r, size, n)
            f = szp(n, size) & ~F_ZF
            if n == 0:
                f |= F_ZF
            if src == 0:
                f |= F_CF
            setf(st, f, F_CF | F_ZF)
            return
        if src == 0:
            st[RFLAGS] |= F_ZF
            return
        if sub == 8:
            n = 0
            while ((src >> n) & 1) == 0:
                n += 1
        else:
            n = bits - 1
            while ((src >> n) & 1) == 0:
                n -= 1
        set_reg(st, r, size, n)
        st[RFLAGS] &= ~F_ZF
        return
    op = sub & 3
    if sub >= 4:
        bo = st[ix(d + D_IMM)] & (bits - 1)
        memoff = 0
    else:
        bo = get_reg(st, st[ix(d + D_REG)], size)
        if st[ix(d + D_MOD)] != 3:
            sbo = sext(bo, size)
            if size == 2:
                memoff = (sbo >> 4) * 2
            elif size == 4:
                memoff = (sbo >> 5) * 4
            else:
                memoff = (sbo >> 6) * 8
        else:
            memoff = 0
        bo &= bits - 1
    if st[ix(d + D_MOD)] == 3:
        r = st[ix(d + D_RM)]
        v = get_reg(st, r, size)
        c = (v >> bo) & 1
        if op == 1:
            set_reg(st, r, size, v | (1 << bo))
        elif op == 2:
            set_reg(st, r, size, v & ~(1 << bo))
        elif op == 3:
            set_reg(st, r, size, v ^ (1 << bo))
    else:
        seg = st[ix(d + D_SEG)]
        off = ea(st) + memoff
        asz = st[ix(d + D_ASZ)]
        if asz == 2:
            off &= 0xFFFF
        elif asz == 4:
            off &= 0xFFFFFFFF
        v = rd(st, pm, seg, off, size)
        if st[ABORT] != 0:
            return
        c = (v >> bo) & 1
        if op == 1:
            wr(st, pm, seg, off, size, v | (1 << bo))
        elif op == 2:
            wr(st, pm, seg, off, size, v & ~(1 << bo))
        elif op == 3:
            wr(st, pm, seg, off, size, v ^ (1 << bo))
    st[RFLAGS] = (st[RFLAGS] & ~F_CF) | c


@njit
def x_bcd(st, pm):
    d = D
    op = st[ix(d + D_SUB)]
    ax = st[RAX] & 0xFFFF
    al = ax & 0xFF
    f = st[RFLAGS]
    c = f & F_CF
    af = (f & F_AF) != 0
    if op == 0 or op == 1:
        nf = 0
        nal = al
        if (al & 0xF) > 9 or af:
            if op == 0:
                nal = al + 6
            else:
                nal = al - 6
            if c != 0 or nal > 0xFF or nal < 0:
                nf |= F_CF
            nal &= 0xFF
            nf |= F_AF
        if al > 0x99 or c != 0:
            if op == 0:
                nal = (nal + 0x60) & 0xFF
            else:
                nal = (nal - 0x60) & 0xFF
            nf |= F_CF
        nf |= szp(nal, 1)
        # OF (undefined): as the add/sub of the adjustment from the original AL
        if op == 0 and (al & 0x80) == 0 and (nal & 0x80) != 0:
            nf |= F_OF
        if op == 1 and (al & 0x80) != 0 and (nal & 0x80) == 0:
            nf |= F_OF
        set_reg(st, RAX, 1, nal)
        setf(st, nf, F_STATUS)
        return
    if op == 2 or op == 3:
        if (al & 0xF) > 9 or af:
            if op == 2:
                ax = ax + 0x106
            else:
                ax = ax - 6
                ax = (ax & 0xFF) | ((((ax >> 8) - 1) & 0xFF) << 8)
            nf = F_AF | F_CF
        else:
            nf = 0
        ax = (ax & 0xFF0F) & 0xFFFF
        nf |= szp(ax & 0xFF, 1)
        set_reg(st, RAX, 2, ax)
        setf(st, nf, F_STATUS)
        return
    imm = st[ix(d + D_IMM)] & 0xFF
    if op == 4:
        if imm == 0:
            raise_exc(st, DE, -1)
            return
        ah = al // imm
        nal = al % imm
        set_reg(st, RAX, 2, (ah << 8) | nal)
        setf(st, szp(nal, 1), F_STATUS)
        return
    ah = (ax >> 8) & 0xFF
    t = ah * imm
    nal = (al + t) & 0xFF
    set_reg(st, RAX, 2, nal)
    # flags as the 8-bit add AL + (AH*imm) (Intel); SF/ZF/PF defined
    add_op(st, al, t & 0xFF, 0, 1)


@njit
def x_conv(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    if st[ix(d + D_SUB)] == 0:
        half = size // 2
        set_reg(st, RAX, size, sext(get_reg(st, RAX, half), half))
    else:
        a = sext(get_reg(st, RAX, size), size)
        set_reg(st, RDX, size, -1 if a < 0 else 0)


@njit
def x_flag(st, pm):
    op = st[ix(D + D_SUB)]
    f = st[RFLAGS]
    if op == 0:
        st[RFLAGS] = f & ~F_CF
    elif op == 1:
        st[RFLAGS] = f | F_CF
    elif op == 2:
        st[RFLAGS] = f ^ F_CF
    elif op == 3 or op == 4:
        if st[PROT] != 0 and ((f >> 12) & 3) < st[CPL]:
            raise_exc(st, GP, 0)
            return
        if op == 3:
            st[RFLAGS] = f & ~F_IF
        else:
            if (f & F_IF) == 0:
                st[SHADOW_NEW] = 1
            st[RFLAGS] = f | F_IF
    elif op == 5:
        st[RFLAGS] = f & ~F_DF
    elif op == 6:
        st[RFLAGS] = f | F_DF
    elif op == 8:
        ah = (st[RAX] >> 8) & 0xFF
        st[RFLAGS] = (f & ~0xFF) | (ah & (F_SF | F_ZF | F_AF | F_PF | F_CF)) | 2
    elif op == 9:
        st[RAX] = (st[RAX] & ~0xFF00) | ((((f & 0xD5) | 2) & 0xFF) << 8)
    elif op == 10:
        st[RAX] = (st[RAX] & ~0xFF) | (0xFF if (f & F_CF) != 0 else 0)


@njit
def x_setcc(st, pm):
    rm_write(st, pm, 1, 1 if cond(st, st[ix(D + D_SUB)]) else 0)


@njit
def x_cmov(st, pm):
    d = D
    size = st[ix(d + D_OSZ)]
    v = rm_read(st, pm, size)
    if st[ABORT] != 0:
        return
    r = st[ix(d + D_REG)]
    if cond(st, st[ix(d + D_SUB)]):
        set_reg(st, r, size, v)
    elif size == 4:
        st[ix(r)] &= 0xFFFFFFFF
