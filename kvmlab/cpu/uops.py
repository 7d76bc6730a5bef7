"""Micro-ops of the fast path: their kinds, and the translation of one decoded instruction
(decode()'s record in st[D..]) into one micro-op (UOP_W slots in a block, layout U_*).

Only the common integer instructions are covered: MOV, the 8 ALU ops and TEST in every
register/immediate/memory form, INC/DEC, LEA, MOVZX/MOVSX/MOVSXD, PUSH/POP of a register or
an immediate, Jcc, JMP rel, CALL rel, RET near and NOP.
Everything else (and anything with a LOCK or REP prefix) is not translated: the block ends
before it and the slow path (run.step_loop) executes it.

Register operands are stored pre-resolved: r (0..15), or 32 + r for AH/CH/DH/BH (a byte
register 4..7 without REX).  Memory operands keep the ModRM pieces: U_BASE (register, -1
none, -2 rip-relative), U_IDX (-1 none), U_SC, U_DISP, U_ASZ and the effective segment U_SEG.
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .optable import (K_ALU, K_TEST, K_INCDEC, K_MOV, K_MOVX, K_LEA, K_JCC, K_BRANCH, K_XCHG,
                      K_PUSH, K_POP, FORM_EG, FORM_GE, FORM_AI, FORM_EI, FORM_RI, FORM_AO, FORM_OA)

# micro-op kinds (the fast executor's switch)
UK_NONE = 0
UK_MOV_RR = 1      # R = RM
UK_MOV_RI = 2      # R = IMM
UK_LOAD = 3        # R = [ea]
UK_STORE = 4       # [ea] = R
UK_STORE_I = 5     # [ea] = IMM
UK_ALU_RR = 6      # R op= RM   (op 0..7 add or adc sbb and sub xor cmp, 8 test)
UK_ALU_RI = 7      # R op= IMM
UK_ALU_RM = 8      # R op= [ea]
UK_ALU_MR = 9      # [ea] op= R
UK_ALU_MI = 10     # [ea] op= IMM
UK_INC_R = 11      # R += 1 (OP 0) / R -= 1 (OP 1), CF kept
UK_INC_M = 12      # [ea] += / -= 1
UK_LEA = 13        # R = ea
UK_MOVX_R = 14     # R = zero/sign (OP 0/1) extended RM of SSZ bytes
UK_MOVX_M = 15     # R = extended [ea]
UK_JCC = 16        # if cc OP: rip = next + IMM (masked to SZ)
UK_JMP = 17        # rip = next + IMM
UK_NOP = 18
UK_PUSH = 19       # push R (OP 0) / IMM (OP 1)
UK_POP = 20        # pop R
UK_CALL = 21       # push next rip; rip = next + IMM
UK_RET = 22        # rip = pop; rsp += IMM

OP_TEST = 8


@njit
def reg_enc(st, r, size):
    """The register operand r of size bytes, resolved (AH..BH -> 32 + 0..3)."""
    if size == 1 and r >= 4 and r < 8 and st[ix(D + D_REX)] == 0:
        return 32 + r - 4
    return r


@njit
def put_mem(st, u):
    st[ix(u + U_BASE)] = st[ix(D + D_BASE)]
    st[ix(u + U_IDX)] = st[ix(D + D_INDEX)]
    st[ix(u + U_SC)] = st[ix(D + D_SCALE)]
    st[ix(u + U_DISP)] = st[ix(D + D_DISP)]
    st[ix(u + U_SEG)] = st[ix(D + D_SEG)]
    st[ix(u + U_ASZ)] = st[ix(D + D_ASZ)]


@njit
def translate_insn(st, u):
    """Write the micro-op for the decoded instruction at st[u..]; returns 1 for a plain
    instruction, 2 for a branch (ends the block), 0 when it is not translated."""
    d = D
    if st[ix(d + D_LOCK)] != 0 or st[ix(d + D_REP)] != 0:
        return 0
    k = st[ix(d + D_KIND)]
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    mod = st[ix(d + D_MOD)]
    st[ix(u + U_SZ)] = size
    st[ix(u + U_LEN)] = st[ix(d + D_LEN)]
    st[ix(u + U_IMM)] = st[ix(d + D_IMM)]
    st[ix(u + U_OP)] = 0
    st[ix(u + U_SSZ)] = 0
    st[ix(u + U_FUSE)] = 0
    rg = reg_enc(st, st[ix(d + D_REG)], size)
    rm = reg_enc(st, st[ix(d + D_RM)], size)
    if k == K_MOV:
        form = sub & 0x70
        if form == FORM_EG:
            if mod == 3:
                st[ix(u + U_K)] = UK_MOV_RR
                st[ix(u + U_R)] = rm
                st[ix(u + U_RM)] = rg
            else:
                st[ix(u + U_K)] = UK_STORE
                st[ix(u + U_R)] = rg
                put_mem(st, u)
            return 1
        if form == FORM_GE:
            if mod == 3:
                st[ix(u + U_K)] = UK_MOV_RR
                st[ix(u + U_R)] = rg
                st[ix(u + U_RM)] = rm
            else:
                st[ix(u + U_K)] = UK_LOAD
                st[ix(u + U_R)] = rg
                put_mem(st, u)
            return 1
        if form == FORM_EI:
            if mod == 3:
                st[ix(u + U_K)] = UK_MOV_RI
                st[ix(u + U_R)] = rm
            else:
                st[ix(u + U_K)] = UK_STORE_I
                put_mem(st, u)
            return 1
        if form == FORM_RI:
            st[ix(u + U_K)] = UK_MOV_RI
            st[ix(u + U_R)] = rm
            return 1
        if form == FORM_AO or form == FORM_OA:
            asz = st[ix(d + D_ASZ)]
            off = st[ix(d + D_IMM)]
            if asz == 2:
                off &= 0xFFFF
            elif asz == 4:
                off &= 0xFFFFFFFF
            st[ix(u + U_K)] = UK_LOAD if form == FORM_AO else UK_STORE
            st[ix(u + U_R)] = RAX
            st[ix(u + U_BASE)] = -1
            st[ix(u + U_IDX)] = -1
            st[ix(u + U_SC)] = 0
            st[ix(u + U_DISP)] = off
            st[ix(u + U_SEG)] = st[ix(d + D_SEG)]
            st[ix(u + U_ASZ)] = 8          # already masked
            return 1
        return 0
    if k == K_ALU or k == K_TEST:
        form = sub & 0x70
        op = OP_TEST if k == K_TEST else sub & 7
        st[ix(u + U_OP)] = op
        if form == FORM_AI:
            st[ix(u + U_K)] = UK_ALU_RI
            st[ix(u + U_R)] = RAX
            return 1
        if form == FORM_EI:
            if mod == 3:
                st[ix(u + U_K)] = UK_ALU_RI
                st[ix(u + U_R)] = rm
            else:
                st[ix(u + U_K)] = UK_ALU_MI
                put_mem(st, u)
            return 1
        if form == FORM_EG and k == K_ALU:
            if mod == 3:
                st[ix(u + U_K)] = UK_ALU_RR
                st[ix(u + U_R)] = rm
                st[ix(u + U_RM)] = rg
            else:
                st[ix(u + U_K)] = UK_ALU_MR
                st[ix(u + U_R)] = rg
                put_mem(st, u)
            return 1
        # reg op= r/m (TEST r/m, reg is the same as TEST reg, r/m)
        if mod == 3:
            st[ix(u + U_K)] = UK_ALU_RR
            st[ix(u + U_R)] = rg
            st[ix(u + U_RM)] = rm
        else:
            st[ix(u + U_K)] = UK_ALU_RM
            st[ix(u + U_R)] = rg
            put_mem(st, u)
        return 1
    if k == K_INCDEC:
        st[ix(u + U_OP)] = 1 if (sub & 32) != 0 else 0
        if (sub & 16) != 0 or mod == 3:
            st[ix(u + U_K)] = UK_INC_R
            st[ix(u + U_R)] = rm
        else:
            st[ix(u + U_K)] = UK_INC_M
            put_mem(st, u)
        return 1
    if k == K_LEA:
        st[ix(u + U_K)] = UK_LEA
        st[ix(u + U_R)] = st[ix(d + D_REG)]
        put_mem(st, u)
        return 1
    if k == K_MOVX:
        if sub == 4:
            if st[MODE64] == 0:
                return 0              # ARPL
            ssz = 4
            sgn = 1
        else:
            ssz = 1 if (sub & 1) == 0 else 2
            sgn = 1 if sub >= 2 else 0
        st[ix(u + U_OP)] = sgn
        st[ix(u + U_SSZ)] = ssz
        st[ix(u + U_R)] = st[ix(d + D_REG)]
        if mod == 3:
            st[ix(u + U_K)] = UK_MOVX_R
            st[ix(u + U_RM)] = reg_enc(st, st[ix(d + D_RM)], ssz)
        else:
            st[ix(u + U_K)] = UK_MOVX_M
            put_mem(st, u)
        return 1
    if k == K_JCC:
        st[ix(u + U_K)] = UK_JCC
        st[ix(u + U_OP)] = sub
        return 2
    if k == K_BRANCH and sub == 0:
        st[ix(u + U_K)] = UK_JMP
        return 2
    if k == K_BRANCH and sub == 2:
        st[ix(u + U_K)] = UK_CALL
        return 2
    if k == K_BRANCH and sub == 4:
        st[ix(u + U_K)] = UK_RET
        st[ix(u + U_IMM)] = st[ix(d + D_IMM)] & 0xFFFF
        return 2
    if k == K_PUSH and (sub == 0 or sub == 1):
        st[ix(u + U_K)] = UK_PUSH
        st[ix(u + U_OP)] = sub
        st[ix(u + U_R)] = st[ix(d + D_RM)]
        return 1
    if k == K_POP and sub == 0:
        st[ix(u + U_K)] = UK_POP
        st[ix(u + U_R)] = st[ix(d + D_RM)]
        return 1
    if k == K_XCHG and sub == 1 and st[ix(d + D_RM)] == 0:
        st[ix(u + U_K)] = UK_NOP
        return 1
    return 0
