"""Decoder: instruction bytes (st[IB..], st[IB_N] of them) -> the decoded record st[D..].

Table driven (optable); the decoder only knows prefixes, ModRM/SIB/displacement and
immediate sizes.  Returns the length, 0 when more bytes are needed than were fetched, or
-1 when the instruction would be longer than 15 bytes (#GP).
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .optable import (OP_KIND, OP_SUB, OP_FLAGS, OP_IMM, MODRM, BYTE, DEF64, FORCE64, INV64,
                      LOCKOK, MEMONLY, SIZE16, FORCEREG, K_UD, K_INVALID, I_B, I_W, I_Z, I_V, I_WB, I_PTR,
                      I_MOFFS)


@njit
def _byte(st, i):
    if i >= st[IB_N]:
        return -1
    return st[ix(IB + i)]


@njit
def _imm(st, i, n):
    """Little-endian sign-extended immediate of n bytes at i, or (0, False) if not fetched."""
    if i + n > st[IB_N]:
        return 0, False
    v = 0
    for k in range(n):
        v |= st[ix(IB + i + k)] << (8 * k)
    s = 64 - 8 * n
    return (v << s) >> s, True


@njit
def decode(st, mode64, csd):
    """csd: CS.D (default 32-bit operands/addresses) outside 64-bit mode."""
    d = D
    i = 0
    seg = -1
    p66 = 0
    p67 = 0
    rep = 0
    lock = 0
    rex = 0
    while True:
        if i >= 15:
            return -1
        b = _byte(st, i)
        if b < 0:
            return 0
        if b == 0x26 or b == 0x2E or b == 0x36 or b == 0x3E:
            if not mode64:
                seg = (b >> 3) & 3
            rex = 0
        elif b == 0x64 or b == 0x65:
            seg = b - 0x60
            rex = 0
        elif b == 0x66:
            p66 = 1
            rex = 0
        elif b == 0x67:
            p67 = 1
            rex = 0
        elif b == 0xF0:
            lock = 1
            rex = 0
        elif b == 0xF2 or b == 0xF3:
            rep = b - 0xF1
            rex = 0
        elif mode64 and (b & 0xF0) == 0x40:
            rex = b
        else:
            break
        i += 1
    mp = 0
    if b == 0x0F:
        i += 1
        b = _byte(st, i)
        if b < 0:
            return 0
        mp = 1
        if b == 0x38 or b == 0x3A:
            # three-byte maps (SSE4, MOVBE, ...) are not implemented
            st[ix(d + D_KIND)] = 2
            st[ix(d + D_LEN)] = i + 1
            return i + 1
    opc = b
    i += 1
    ent = mp * 2048 + opc * 8
    fl = OP_FLAGS[ent]
    modrm = -1
    reg = 0
    if fl & MODRM:
        modrm = _byte(st, i)
        if modrm < 0:
            return 0
        i += 1
        reg = (modrm >> 3) & 7
        ent += reg
        fl = OP_FLAGS[ent]
    kind = OP_KIND[ent]
    sub = OP_SUB[ent]
    immk = OP_IMM[ent]
    rexw = (rex >> 3) & 1
    # operand size
    if fl & BYTE:
        osz = 1
    elif mode64:
        if rexw:
            osz = 8
        elif fl & FORCE64:
            osz = 8
        elif p66:
            osz = 2
        elif fl & DEF64:
            osz = 8
        else:
            osz = 4
    else:
        osz = 4 if (csd != 0) != (p66 != 0) else 2
    if mode64:
        asz = 4 if p67 else 8
    else:
        asz = 4 if (csd != 0) != (p67 != 0) else 2
    mod = 3
    rm = 0
    base = -1
    index = -1
    scale = 0
    disp = 0
    dseg = DS
    if modrm >= 0:
        mod = modrm >> 6
        rm = modrm & 7
        reg = reg | ((rex & 4) << 1)
        if fl & FORCEREG:
            mod = 3
        if mod == 3:
            rm = rm | ((rex & 1) << 3)
        elif asz == 2:
            if rm == 0:
                base, index = RBX, RSI
            elif rm == 1:
                base, index = RBX, RDI
            elif rm == 2:
                base, index = RBP, RSI
                dseg = SS
            elif rm == 3:
                base, index = RBP, RDI
                dseg = SS
            elif rm == 4:
                base = RSI
            elif rm == 5:
                base = RDI
            elif rm == 6:
                if mod == 0:
                    base = -1
                else:
                    base = RBP
                    dseg = SS
            else:
                base = RBX
            if mod == 1:
                disp, ok = _imm(st, i, 1)
                if not ok:
                    return 0
                i += 1
            elif mod == 2 or (mod == 0 and rm == 6):
                disp, ok = _imm(st, i, 2)
                if not ok:
                    return 0
                i += 2
        else:
            if rm == 4:
                sib = _byte(st, i)
                if sib < 0:
                    return 0
                i += 1
                scale = sib >> 6
                index = ((sib >> 3) & 7) | ((rex & 2) << 2)
                if index == 4:
                    index = -1
                bb = sib & 7
                if bb == 5 and mod == 0:
                    base = -1
                    disp, ok = _imm(st, i, 4)
                    if not ok:
                        return 0
                    i += 4
                else:
                    base = bb | ((rex & 1) << 3)
            elif rm == 5 and mod == 0:
                base = -2 if mode64 else -1
                disp, ok = _imm(st, i, 4)
                if not ok:
                    return 0
                i += 4
            else:
                base = rm | ((rex & 1) << 3)
            if base == RSP or base == RBP:
                dseg = SS
            if mod == 1:
                disp, ok = _imm(st, i, 1)
                if not ok:
                    return 0
                i += 1
            elif mod == 2:
                disp, ok = _imm(st, i, 4)
                if not ok:
                    return 0
                i += 4
    else:
        reg = opc & 7
        rm = (opc & 7) | ((rex & 1) << 3)
    if fl & SIZE16:
        osz = 2
    # immediates
    imm = 0
    imm2 = 0
    ok = True
    if immk == I_B:
        imm, ok = _imm(st, i, 1)
        i += 1
    elif immk == I_W:
        imm, ok = _imm(st, i, 2)
        imm &= 0xFFFF
        i += 2
    elif immk == I_Z:
        n = 2 if osz == 2 else 4
        imm, ok = _imm(st, i, n)
        i += n
    elif immk == I_V:
        imm, ok = _imm(st, i, osz)
        i += osz
    elif immk == I_WB:
        imm, ok = _imm(st, i, 2)
        imm &= 0xFFFF
        imm2, ok2 = _imm(st, i + 2, 1)
        imm2 &= 0xFF
        ok = ok and ok2
        i += 3
    elif immk == I_PTR:
        n = 2 if osz == 2 else 4
        imm, ok = _imm(st, i, n)
        imm2, ok2 = _imm(st, i + n, 2)
        imm2 &= 0xFFFF
        ok = ok and ok2
        i += n + 2
    elif immk == I_MOFFS:
        imm, ok = _imm(st, i, asz)
        i += asz
    if i > 15:
        return -1
    if not ok:
        return 0
    # validity
    if kind == K_INVALID:
        kind = K_UD
    if mode64 and (fl & INV64) != 0:
        kind = K_UD
    if (fl & MEMONLY) != 0 and mod == 3:
        kind = K_UD
    if lock and ((fl & LOCKOK) == 0 or mod == 3):
        kind = K_UD
    if mp == 0 and (opc == 0xC4 or opc == 0xC5) and (mode64 or (st[PROT] != 0 and mod == 3)):
        kind = 2          # VEX prefix (AVX): not implemented -> emulation failure
    if mp == 0 and opc == 0x62 and mode64:
        kind = 2          # EVEX prefix (AVX-512)
    if seg >= 0:
        dseg = seg
    st[ix(d + D_KIND)] = kind
    st[ix(d + D_SUB)] = sub
    st[ix(d + D_LEN)] = i
    st[ix(d + D_OSZ)] = osz
    st[ix(d + D_ASZ)] = asz
    st[ix(d + D_SEG)] = dseg
    st[ix(d + D_MOD)] = mod
    st[ix(d + D_REG)] = reg
    st[ix(d + D_RM)] = rm
    st[ix(d + D_BASE)] = base
    st[ix(d + D_INDEX)] = index
    st[ix(d + D_SCALE)] = scale
    st[ix(d + D_DISP)] = disp
    st[ix(d + D_IMM)] = imm
    st[ix(d + D_IMM2)] = imm2
    st[ix(d + D_REP)] = rep
    st[ix(d + D_LOCK)] = lock
    st[ix(d + D_REX)] = rex | (0x100 if mode64 and rex != 0 else 0)
    st[ix(d + D_OPC)] = opc
    st[ix(d + D_MAP)] = mp
    st[ix(d + D_FLAGS)] = fl
    st[ix(d + D_SEGOVR)] = seg
    st[ix(d + D_PFX66)] = p66
    return i
