"""The block cache of the fast path: storage (st[BC..], layout BK_*), lookup, validation
against the guest bytes now in memory, and translation of a new block.

A block is a straight run of translated instructions (uops.translate_insn) in one guest
page, ending after a branch, before an untranslated instruction, at the page end, at the
CS limit, or at BK_MAXI instructions / BK_MAXLEN bytes.  It is keyed by the host address
of its first byte, the mode and the offset in the guest page, and every hit is checked
against the bytes now in memory, so self-modifying code, DMA, userspace and other vCPUs
writing code between runs need no invalidation.  A block with BK_N = 0 records that the
instruction at that address is not translated (the slow path runs it).
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .hostptr import load8, load64
from .decode import decode
from .uops import translate_insn, UK_JCC, UK_INC_R, UK_ALU_RR, UK_ALU_RI


@njit
def block_slot(ha):
    return BC + ((ha ^ (ha >> 9) ^ (ha >> 18)) & (BC_N - 1)) * BC_STRIDE


@njit
def block_word(ha, pgoff, j, n):
    """Little-endian word j of the n bytes at host address ha (page offset pgoff); never
    reads past the guest page."""
    left = n - 8 * j
    if left > 8:
        left = 8
    if pgoff + 8 * j + 8 <= 0x1000:
        w = load64(ha + 8 * j)
        if left < 8:
            w &= (1 << (8 * left)) - 1
        return w
    w = 0
    for i in range(left):
        w |= load8(ha + 8 * j + i) << (8 * i)
    return w


@njit
def block_valid(st, b, ha, pgoff, mode):
    if st[ix(b + BK_HOST)] != ha or st[ix(b + BK_MODE)] != mode or st[ix(b + BK_PGOFF)] != pgoff:
        return False
    n = st[ix(b + BK_LEN)]
    for j in range((n + 7) >> 3):
        if block_word(ha, pgoff, j, n) != st[ix(b + BK_W + j)]:
            return False
    return True


@njit
def block_build(st, b, ha, pgoff, rip, mode, cslim, ripmask):
    """Translate the block starting at host address ha (rip) into slot b."""
    mode64 = mode & 1
    csd = (mode >> 1) & 1
    st[FAST_XLATE] += 1
    pos = 0
    n = 0
    first = 0
    while n < BK_MAXI:
        avail = 0x1000 - (pgoff + pos)
        if avail > 15:
            avail = 15
        cur = rip + pos
        if mode64 == 0:
            if cur > ripmask:
                break
            la = cslim - cur + 1
            if la < avail:
                avail = la
        if avail <= 0:
            break
        for i in range(avail):
            st[ix(IB + i)] = load8(ha + pos + i)
        st[IB_N] = avail
        ln = decode(st, mode64, csd)
        if ln <= 0:
            break
        if n == 0:
            first = ln
        if pos + ln > BK_MAXLEN or (mode64 == 0 and cur + ln > ripmask):
            break
        u = b + BK_U + n * UOP_W
        r = translate_insn(st, u)
        if r == 0:
            break
        if n > 0 and st[ix(u + U_K)] == UK_JCC:
            # a flag-setting register op then Jcc: one dispatch for both (fastexec)
            p = u - UOP_W
            pk = st[ix(p + U_K)]
            if pk == UK_INC_R or ((pk == UK_ALU_RR or pk == UK_ALU_RI)
                                  and st[ix(p + U_OP)] != 2 and st[ix(p + U_OP)] != 3):
                st[ix(p + U_FUSE)] = 1
        pos += ln
        n += 1
        if r == 2:
            break
    if n == 0:
        # not translated: remember the first instruction's bytes (or one byte)
        pos = first if first > 0 else 1
        if pos > 0x1000 - pgoff:
            pos = 0x1000 - pgoff
    st[ix(b + BK_HOST)] = ha
    st[ix(b + BK_MODE)] = mode
    st[ix(b + BK_PGOFF)] = pgoff
    st[ix(b + BK_LEN)] = pos
    st[ix(b + BK_N)] = n
    for j in range((pos + 7) >> 3):
        st[ix(b + BK_W + j)] = block_word(ha, pgoff, j, pos)
