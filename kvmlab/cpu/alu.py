"""Arithmetic with exact flags, for operand sizes 1, 2, 4, 8 (values in int64).

Undefined flags follow one documented choice: AF=0 after AND/OR/XOR/TEST; after shifts
AF=0; after MUL/IMUL SF/ZF/PF from the low half of the result and AF=0 (as on recent
Intel); DIV/IDIV leave the status flags unchanged; BSF/BSR with a zero source leave the
destination unchanged and set ZF, clearing CF/OF/SF/AF/PF (AMD and recent Intel agree
on the destination).
"""
from .jit import njit
from .layout import *  # noqa: F401,F403


@njit
def msk(size):
    if size == 8:
        return -1
    return (1 << (8 * size)) - 1


@njit
def sext(v, size):
    if size == 8:
        return v
    s = 64 - 8 * size
    return (v << s) >> s


@njit
def ult(a, b):
    """Unsigned a < b on 64-bit values."""
    return (a ^ (-0x8000000000000000)) < (b ^ (-0x8000000000000000))


@njit
def shr64(v, n):
    """Logical right shift of a 64-bit value by n (0..63)."""
    if n == 0:
        return v
    return (v >> n) & ((1 << (64 - n)) - 1)


@njit
def szp(res, size):
    f = 0
    if (res & msk(size)) == 0:
        f |= F_ZF
    if ((res >> (8 * size - 1)) & 1) != 0:
        f |= F_SF
    x = res & 0xFF
    x ^= x >> 4
    if ((0x6996 >> (x & 0xF)) & 1) == 0:
        f |= F_PF
    return f


@njit
def setf(st, f, which):
    st[RFLAGS] = (st[RFLAGS] & ~which) | (f & which)


@njit
def cf(st):
    return st[RFLAGS] & 1


@njit
def add_op(st, a, b, c, size):
    m = msk(size)
    a &= m
    b &= m
    res = (a + b + c) & m
    f = szp(res, size)
    if size == 8:
        if ult(res, a) or (c != 0 and res == a):
            f |= F_CF
    elif ((a + b + c) >> (8 * size)) != 0:
        f |= F_CF
    if (((a ^ res) & (b ^ res)) >> (8 * size - 1)) & 1:
        f |= F_OF
    if ((a ^ b ^ res) & 0x10) != 0:
        f |= F_AF
    setf(st, f, F_STATUS)
    return res


@njit
def sub_op(st, a, b, c, size):
    m = msk(size)
    a &= m
    b &= m
    res = (a - b - c) & m
    f = szp(res, size)
    if size == 8:
        if ult(a, b) or (c != 0 and a == b):
            f |= F_CF
    elif (a - b - c) < 0:
        f |= F_CF
    if (((a ^ b) & (a ^ res)) >> (8 * size - 1)) & 1:
        f |= F_OF
    if ((a ^ b ^ res) & 0x10) != 0:
        f |= F_AF
    setf(st, f, F_STATUS)
    return res


@njit
def logic_flags(st, res, size):
    setf(st, szp(res, size), F_STATUS)
    return res & msk(size)


@njit
def alu(st, op, a, b, size):
    """The 8 classic ALU ops (add or adc sbb and sub xor cmp); cmp returns a unchanged."""
    if op == 0:
        return add_op(st, a, b, 0, size)
    if op == 1:
        return logic_flags(st, a | b, size)
    if op == 2:
        return add_op(st, a, b, cf(st), size)
    if op == 3:
        return sub_op(st, a, b, cf(st), size)
    if op == 4:
        return logic_flags(st, a & b, size)
    if op == 5:
        return sub_op(st, a, b, 0, size)
    if op == 6:
        return logic_flags(st, a ^ b, size)
    sub_op(st, a, b, 0, size)
    return a & msk(size)


@njit
def inc_dec(st, a, dec, size):
    saved = st[RFLAGS] & F_CF
    if dec:
        r = sub_op(st, a, 1, 0, size)
    else:
        r = add_op(st, a, 1, 0, size)
    st[RFLAGS] = (st[RFLAGS] & ~F_CF) | saved
    return r


@njit
def cond(st, cc):
    """Condition code cc (0..15) of Jcc/SETcc/CMOVcc."""
    f = st[RFLAGS]
    c = cc >> 1
    if c == 0:
        r = (f & F_OF) != 0
    elif c == 1:
        r = (f & F_CF) != 0
    elif c == 2:
        r = (f & F_ZF) != 0
    elif c == 3:
        r = (f & (F_CF | F_ZF)) != 0
    elif c == 4:
        r = (f & F_SF) != 0
    elif c == 5:
        r = (f & F_PF) != 0
    elif c == 6:
        r = ((f & F_SF) != 0) != ((f & F_OF) != 0)
    else:
        r = (f & F_ZF) != 0 or (((f & F_SF) != 0) != ((f & F_OF) != 0))
    if cc & 1:
        return not r
    return r


@njit
def shift_op(st, op, a, cnt, size):
    """ROL ROR RCL RCR SHL SHR SAL(=SHL) SAR with the count already masked (5 or 6 bits).
    Returns the result; flags untouched when the count is 0."""
    bits = 8 * size
    m = msk(size)
    a &= m
    if cnt == 0:
        return a
    f = st[RFLAGS]
    c = f & F_CF
    o = (f & F_OF) != 0
    res = a
    if op == 0:  # ROL
        n = cnt % bits
        if n == 0:
            res = a
        else:
            res = ((a << n) | shr64(a, bits - n)) & m
        cfv = res & 1
        o = ((res >> (bits - 1)) & 1) != cfv
        f = (f & ~(F_CF | F_OF)) | cfv | (F_OF if o else 0)
        st[RFLAGS] = f
        return res
    if op == 1:  # ROR
        n = cnt % bits
        if n == 0:
            res = a
        else:
            res = (shr64(a, n) | (a << (bits - n))) & m
        cfv = (res >> (bits - 1)) & 1
        o = cfv != ((res >> (bits - 2)) & 1)
        f = (f & ~(F_CF | F_OF)) | cfv | (F_OF if o else 0)
        st[RFLAGS] = f
        return res
    if op == 2 or op == 3:  # RCL / RCR through carry, bits+1 wide rotation
        n = cnt
        if size == 1:
            n = cnt % 9
        elif size == 2:
            n = cnt % 17
        res = a
        cc = c
        for _ in range(n):
            if op == 2:
                nc = (res >> (bits - 1)) & 1
                res = ((res << 1) | cc) & m
                cc = nc
            else:
                nc = res & 1
                res = shr64(res, 1) | (cc << (bits - 1))
                res &= m
                cc = nc
        if op == 2:
            o = ((res >> (bits - 1)) & 1) != cc
        else:
            o = ((res >> (bits - 1)) & 1) != ((res >> (bits - 2)) & 1)
        if n == 0:
            return a
        st[RFLAGS] = (f & ~(F_CF | F_OF)) | cc | (F_OF if o else 0)
        return res
    if op == 4 or op == 6:  # SHL
        if cnt > bits:
            cfv = 0
            res = 0
        else:
            cfv = (a >> (bits - cnt)) & 1 if cnt <= bits else 0
            res = (a << cnt) & m if cnt < 64 else 0
        o = ((res >> (bits - 1)) & 1) != cfv
    elif op == 5:  # SHR
        if cnt > bits:
            cfv = 0
            res = 0
        else:
            cfv = shr64(a, cnt - 1) & 1
            res = shr64(a, cnt) if cnt < 64 else 0
        o = ((a >> (bits - 1)) & 1) != 0
    else:  # SAR
        sa = sext(a, size)
        if cnt >= bits:
            cfv = (sa >> (bits - 1)) & 1
            res = (sa >> (bits - 1)) & m
        else:
            cfv = (sa >> (cnt - 1)) & 1
            res = (sa >> cnt) & m
        o = False
    nf = szp(res, size) | cfv | (F_OF if o else 0)
    st[RFLAGS] = (f & ~F_STATUS) | nf
    return res


@njit
def umul64(a, b):
    """Full 128-bit unsigned product of two 64-bit values: (lo, hi)."""
    m32 = 0xFFFFFFFF
    a0 = a & m32
    a1 = shr64(a, 32)
    b0 = b & m32
    b1 = shr64(b, 32)
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    p11 = a1 * b1
    mid = shr64(p00, 32) + (p01 & m32) + (p10 & m32)
    lo = (p00 & m32) | (mid << 32)
    hi = p11 + shr64(p01, 32) + shr64(p10, 32) + shr64(mid, 32)
    return lo, hi


@njit
def udiv128(hi, lo, d):
    """(hi:lo) / d for 64-bit unsigned values with hi < d: (quotient, remainder)."""
    q = 0
    r = hi
    for i in range(63, -1, -1):
        top = r < 0
        r = (r << 1) | ((lo >> i) & 1)
        q <<= 1
        if top or not ult(r, d):
            r = r - d
            q |= 1
    return q, r
