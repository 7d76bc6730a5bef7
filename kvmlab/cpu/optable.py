"""The instruction table: one place that drives decode, disassembly text and tests.

Each row is (map, opcode, reg-or-None, mnemonic, operands, kind, sub, flags).  map 0 is
the one-byte map, map 1 the 0F map.  reg None means the row covers every ModRM.reg.
`build()` turns the rows into the arrays the decoder reads: entry = map*2048 + opc*8 + reg.
Operand spec letters (Intel SDM style): E r/m, G reg, I imm, A accumulator, M memory only,
b byte, w word, v 16/32/64, z 16/32, S segment register, O moffs, J relative.
"""
import numpy as np

# kinds (the executor's switch)
K_INVALID, K_UD, K_UNSUP, K_ALU, K_TEST, K_INCDEC, K_UNARY, K_MULDIV, K_IMUL, K_SHIFT, \
    K_SHXD, K_MOV, K_MOVX, K_LEA, K_XCHG, K_PUSH, K_POP, K_STACK, K_JCC, K_BRANCH, K_LOOP, \
    K_SETCC, K_CMOV, K_FLAG, K_CONV, K_BCD, K_STRING, K_IO, K_INT, K_MOVSEG, K_BIT, \
    K_MISC, K_ATOMIC, K_SYS, K_FAST_SYS, K_X87, K_CRDR = range(37)

# flags
MODRM = 1
BYTE = 2          # byte operand size
DEF64 = 4         # default operand size 64 in long mode (push, pop, ...)
FORCE64 = 8       # operand size 64 in long mode whatever 66h says (near branches)
INV64 = 16        # #UD in 64-bit mode
LOCKOK = 32       # LOCK allowed with a memory destination
MEMONLY = 64      # register form is #UD
REGONLY = 128     # memory form is #UD / another instruction
SIZE16 = 256      # operand size always 16 (seg moves, ...)
FORCEREG = 512    # ModRM.mod is ignored: always a register operand (MOV CRn/DRn)
NOREP = 0

# immediates
I_NONE, I_B, I_W, I_Z, I_V, I_WB, I_PTR, I_MOFFS = range(8)

ALU_NAMES = ('add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp')
CC_NAMES = ('o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g')
SHIFT_NAMES = ('rol', 'ror', 'rcl', 'rcr', 'shl', 'shr', 'sal', 'sar')

# operand forms for K_ALU / K_TEST / K_MOV (high bits of sub)
FORM_EG, FORM_GE, FORM_AI, FORM_EI = 0, 16, 32, 48
# K_MOV extra forms
FORM_RI, FORM_AO, FORM_OA = 64, 80, 96

ROWS = []


def row(mp, opc, reg, mn, ops, kind, sub=0, flags=0, imm=I_NONE):
    ROWS.append((mp, opc, reg, mn, ops, kind, sub, flags, imm))


def _one_byte():
    for i, name in enumerate(ALU_NAMES):
        b = i * 8
        lk = LOCKOK if name != 'cmp' else 0
        row(0, b + 0, None, name, 'Eb,Gb', K_ALU, i | FORM_EG, MODRM | BYTE | lk)
        row(0, b + 1, None, name, 'Ev,Gv', K_ALU, i | FORM_EG, MODRM | lk)
        row(0, b + 2, None, name, 'Gb,Eb', K_ALU, i | FORM_GE, MODRM | BYTE)
        row(0, b + 3, None, name, 'Gv,Ev', K_ALU, i | FORM_GE, MODRM)
        row(0, b + 4, None, name, 'AL,Ib', K_ALU, i | FORM_AI, BYTE, I_B)
        row(0, b + 5, None, name, 'eAX,Iz', K_ALU, i | FORM_AI, 0, I_Z)
        row(0, 0x80, i, name, 'Eb,Ib', K_ALU, i | FORM_EI, MODRM | BYTE | lk, I_B)
        row(0, 0x81, i, name, 'Ev,Iz', K_ALU, i | FORM_EI, MODRM | lk, I_Z)
        row(0, 0x82, i, name, 'Eb,Ib', K_ALU, i | FORM_EI, MODRM | BYTE | lk | INV64, I_B)
        row(0, 0x83, i, name, 'Ev,Ib', K_ALU, i | FORM_EI, MODRM | lk, I_B)
    # segment push/pop (sub = segment number)
    for opc, s in ((0x06, 0), (0x0E, 1), (0x16, 2), (0x1E, 3)):
        row(0, opc, None, 'push', 'ES CS SS DS'.split()[s], K_PUSH, 16 + s, INV64)
    for opc, s in ((0x07, 0), (0x17, 2), (0x1F, 3)):
        row(0, opc, None, 'pop', 'ES CS SS DS'.split()[s], K_POP, 16 + s, INV64)
    row(0, 0x27, None, 'daa', '', K_BCD, 0, INV64)
    row(0, 0x2F, None, 'das', '', K_BCD, 1, INV64)
    row(0, 0x37, None, 'aaa', '', K_BCD, 2, INV64)
    row(0, 0x3F, None, 'aas', '', K_BCD, 3, INV64)
    for r in range(8):
        row(0, 0x40 + r, None, 'inc', 'Zv', K_INCDEC, 16 + r, 0)      # REX in 64-bit mode
        row(0, 0x48 + r, None, 'dec', 'Zv', K_INCDEC, 32 + 16 + r, 0)
        row(0, 0x50 + r, None, 'push', 'Zv', K_PUSH, 0, DEF64)
        row(0, 0x58 + r, None, 'pop', 'Zv', K_POP, 0, DEF64)
    row(0, 0x60, None, 'pusha', '', K_STACK, 0, INV64)
    row(0, 0x61, None, 'popa', '', K_STACK, 1, INV64)
    row(0, 0x62, None, 'bound', 'Gv,Ma', K_MISC, 1, MODRM | MEMONLY | INV64)
    row(0, 0x63, None, 'movsxd', 'Gv,Ed', K_MOVX, 4, MODRM)            # ARPL outside 64-bit: #UD here
    row(0, 0x68, None, 'push', 'Iz', K_PUSH, 1, DEF64, I_Z)
    row(0, 0x69, None, 'imul', 'Gv,Ev,Iz', K_IMUL, 1, MODRM, I_Z)
    row(0, 0x6A, None, 'push', 'Ib', K_PUSH, 1, DEF64, I_B)
    row(0, 0x6B, None, 'imul', 'Gv,Ev,Ib', K_IMUL, 1, MODRM, I_B)
    row(0, 0x6C, None, 'insb', '', K_STRING, 5, BYTE)
    row(0, 0x6D, None, 'ins', '', K_STRING, 5, 0)
    row(0, 0x6E, None, 'outsb', '', K_STRING, 6, BYTE)
    row(0, 0x6F, None, 'outs', '', K_STRING, 6, 0)
    for cc in range(16):
        row(0, 0x70 + cc, None, 'j' + CC_NAMES[cc], 'Jb', K_JCC, cc, FORCE64, I_B)
    row(0, 0x84, None, 'test', 'Eb,Gb', K_TEST, FORM_EG, MODRM | BYTE)
    row(0, 0x85, None, 'test', 'Ev,Gv', K_TEST, FORM_EG, MODRM)
    row(0, 0x86, None, 'xchg', 'Eb,Gb', K_XCHG, 0, MODRM | BYTE | LOCKOK)
    row(0, 0x87, None, 'xchg', 'Ev,Gv', K_XCHG, 0, MODRM | LOCKOK)
    row(0, 0x88, None, 'mov', 'Eb,Gb', K_MOV, FORM_EG, MODRM | BYTE)
    row(0, 0x89, None, 'mov', 'Ev,Gv', K_MOV, FORM_EG, MODRM)
    row(0, 0x8A, None, 'mov', 'Gb,Eb', K_MOV, FORM_GE, MODRM | BYTE)
    row(0, 0x8B, None, 'mov', 'Gv,Ev', K_MOV, FORM_GE, MODRM)
    row(0, 0x8C, None, 'mov', 'Ev,Sw', K_MOVSEG, 0, MODRM)
    row(0, 0x8D, None, 'lea', 'Gv,M', K_LEA, 0, MODRM | MEMONLY)
    row(0, 0x8E, None, 'mov', 'Sw,Ew', K_MOVSEG, 1, MODRM | SIZE16)
    row(0, 0x8F, 0, 'pop', 'Ev', K_POP, 2, MODRM | DEF64)
    row(0, 0x90, None, 'nop', '', K_XCHG, 1, 0)
    for r in range(1, 8):
        row(0, 0x90 + r, None, 'xchg', 'Zv,eAX', K_XCHG, 1, 0)
    row(0, 0x98, None, 'cbw', '', K_CONV, 0, 0)
    row(0, 0x99, None, 'cwd', '', K_CONV, 1, 0)
    row(0, 0x9A, None, 'call', 'Ap', K_BRANCH, 7, INV64, I_PTR)
    row(0, 0x9B, None, 'wait', '', K_MISC, 2, 0)
    row(0, 0x9C, None, 'pushf', '', K_STACK, 2, DEF64)
    row(0, 0x9D, None, 'popf', '', K_STACK, 3, DEF64)
    row(0, 0x9E, None, 'sahf', '', K_FLAG, 8, 0)
    row(0, 0x9F, None, 'lahf', '', K_FLAG, 9, 0)
    row(0, 0xA0, None, 'mov', 'AL,Ob', K_MOV, FORM_AO, BYTE, I_MOFFS)
    row(0, 0xA1, None, 'mov', 'eAX,Ov', K_MOV, FORM_AO, 0, I_MOFFS)
    row(0, 0xA2, None, 'mov', 'Ob,AL', K_MOV, FORM_OA, BYTE, I_MOFFS)
    row(0, 0xA3, None, 'mov', 'Ov,eAX', K_MOV, FORM_OA, 0, I_MOFFS)
    row(0, 0xA4, None, 'movsb', '', K_STRING, 0, BYTE)
    row(0, 0xA5, None, 'movs', '', K_STRING, 0, 0)
    row(0, 0xA6, None, 'cmpsb', '', K_STRING, 1, BYTE)
    row(0, 0xA7, None, 'cmps', '', K_STRING, 1, 0)
    row(0, 0xA8, None, 'test', 'AL,Ib', K_TEST, FORM_AI, BYTE, I_B)
    row(0, 0xA9, None, 'test', 'eAX,Iz', K_TEST, FORM_AI, 0, I_Z)
    row(0, 0xAA, None, 'stosb', '', K_STRING, 2, BYTE)
    row(0, 0xAB, None, 'stos', '', K_STRING, 2, 0)
    row(0, 0xAC, None, 'lodsb', '', K_STRING, 3, BYTE)
    row(0, 0xAD, None, 'lods', '', K_STRING, 3, 0)
    row(0, 0xAE, None, 'scasb', '', K_STRING, 4, BYTE)
    row(0, 0xAF, None, 'scas', '', K_STRING, 4, 0)
    for r in range(8):
        row(0, 0xB0 + r, None, 'mov', 'Zb,Ib', K_MOV, FORM_RI, BYTE, I_B)
        row(0, 0xB8 + r, None, 'mov', 'Zv,Iv', K_MOV, FORM_RI, 0, I_V)
    for r in range(8):
        row(0, 0xC0, r, SHIFT_NAMES[r], 'Eb,Ib', K_SHIFT, r, MODRM | BYTE, I_B)
        row(0, 0xC1, r, SHIFT_NAMES[r], 'Ev,Ib', K_SHIFT, r, MODRM, I_B)
        row(0, 0xD0, r, SHIFT_NAMES[r], 'Eb,1', K_SHIFT, r | 16, MODRM | BYTE)
        row(0, 0xD1, r, SHIFT_NAMES[r], 'Ev,1', K_SHIFT, r | 16, MODRM)
        row(0, 0xD2, r, SHIFT_NAMES[r], 'Eb,CL', K_SHIFT, r | 32, MODRM | BYTE)
        row(0, 0xD3, r, SHIFT_NAMES[r], 'Ev,CL', K_SHIFT, r | 32, MODRM)
    row(0, 0xC2, None, 'ret', 'Iw', K_BRANCH, 4, FORCE64, I_W)
    row(0, 0xC3, None, 'ret', '', K_BRANCH, 4, FORCE64)
    row(0, 0xC4, None, 'les', 'Gz,Mp', K_MOVSEG, 2, MODRM | MEMONLY | INV64)   # VEX in 64-bit mode
    row(0, 0xC5, None, 'lds', 'Gz,Mp', K_MOVSEG, 5, MODRM | MEMONLY | INV64)
    row(0, 0xC6, 0, 'mov', 'Eb,Ib', K_MOV, FORM_EI, MODRM | BYTE, I_B)
    row(0, 0xC7, 0, 'mov', 'Ev,Iz', K_MOV, FORM_EI, MODRM, I_Z)
    row(0, 0xC8, None, 'enter', 'Iw,Ib', K_STACK, 4, DEF64, I_WB)
    row(0, 0xC9, None, 'leave', '', K_STACK, 5, DEF64)
    row(0, 0xCA, None, 'retf', 'Iw', K_BRANCH, 8, 0, I_W)
    row(0, 0xCB, None, 'retf', '', K_BRANCH, 8, 0)
    row(0, 0xCC, None, 'int3', '', K_INT, 0, 0)
    row(0, 0xCD, None, 'int', 'Ib', K_INT, 1, 0, I_B)
    row(0, 0xCE, None, 'into', '', K_INT, 2, INV64)
    row(0, 0xCF, None, 'iret', '', K_INT, 3, 0)
    row(0, 0xD4, None, 'aam', 'Ib', K_BCD, 4, INV64, I_B)
    row(0, 0xD5, None, 'aad', 'Ib', K_BCD, 5, INV64, I_B)
    row(0, 0xD6, None, 'salc', '', K_FLAG, 10, INV64)
    row(0, 0xD7, None, 'xlat', '', K_MISC, 3, 0)
    for opc in range(0xD8, 0xE0):
        row(0, opc, None, 'esc', 'x87', K_X87, 0, MODRM)
    row(0, 0xE0, None, 'loopne', 'Jb', K_LOOP, 0, FORCE64, I_B)
    row(0, 0xE1, None, 'loope', 'Jb', K_LOOP, 1, FORCE64, I_B)
    row(0, 0xE2, None, 'loop', 'Jb', K_LOOP, 2, FORCE64, I_B)
    row(0, 0xE3, None, 'jcxz', 'Jb', K_LOOP, 3, FORCE64, I_B)
    row(0, 0xE4, None, 'in', 'AL,Ib', K_IO, 0, BYTE, I_B)
    row(0, 0xE5, None, 'in', 'eAX,Ib', K_IO, 0, 0, I_B)
    row(0, 0xE6, None, 'out', 'Ib,AL', K_IO, 1, BYTE, I_B)
    row(0, 0xE7, None, 'out', 'Ib,eAX', K_IO, 1, 0, I_B)
    row(0, 0xE8, None, 'call', 'Jz', K_BRANCH, 2, FORCE64, I_Z)
    row(0, 0xE9, None, 'jmp', 'Jz', K_BRANCH, 0, FORCE64, I_Z)
    row(0, 0xEA, None, 'jmp', 'Ap', K_BRANCH, 6, INV64, I_PTR)
    row(0, 0xEB, None, 'jmp', 'Jb', K_BRANCH, 0, FORCE64, I_B)
    row(0, 0xEC, None, 'in', 'AL,DX', K_IO, 2, BYTE)
    row(0, 0xED, None, 'in', 'eAX,DX', K_IO, 2, 0)
    row(0, 0xEE, None, 'out', 'DX,AL', K_IO, 3, BYTE)
    row(0, 0xEF, None, 'out', 'DX,eAX', K_IO, 3, 0)
    row(0, 0xF1, None, 'int1', '', K_INT, 4, 0)
    row(0, 0xF4, None, 'hlt', '', K_MISC, 0, 0)
    row(0, 0xF5, None, 'cmc', '', K_FLAG, 2, 0)
    row(0, 0xF6, 0, 'test', 'Eb,Ib', K_TEST, FORM_EI, MODRM | BYTE, I_B)
    row(0, 0xF6, 1, 'test', 'Eb,Ib', K_TEST, FORM_EI, MODRM | BYTE, I_B)
    row(0, 0xF7, 0, 'test', 'Ev,Iz', K_TEST, FORM_EI, MODRM, I_Z)
    row(0, 0xF7, 1, 'test', 'Ev,Iz', K_TEST, FORM_EI, MODRM, I_Z)
    for opc, fl in ((0xF6, BYTE), (0xF7, 0)):
        row(0, opc, 2, 'not', 'E', K_UNARY, 0, MODRM | fl | LOCKOK)
        row(0, opc, 3, 'neg', 'E', K_UNARY, 1, MODRM | fl | LOCKOK)
        for r, mn in ((4, 'mul'), (5, 'imul'), (6, 'div'), (7, 'idiv')):
            row(0, opc, r, mn, 'E', K_MULDIV, r - 4, MODRM | fl)
    row(0, 0xF8, None, 'clc', '', K_FLAG, 0, 0)
    row(0, 0xF9, None, 'stc', '', K_FLAG, 1, 0)
    row(0, 0xFA, None, 'cli', '', K_FLAG, 3, 0)
    row(0, 0xFB, None, 'sti', '', K_FLAG, 4, 0)
    row(0, 0xFC, None, 'cld', '', K_FLAG, 5, 0)
    row(0, 0xFD, None, 'std', '', K_FLAG, 6, 0)
    row(0, 0xFE, 0, 'inc', 'Eb', K_INCDEC, 0, MODRM | BYTE | LOCKOK)
    row(0, 0xFE, 1, 'dec', 'Eb', K_INCDEC, 32, MODRM | BYTE | LOCKOK)
    row(0, 0xFF, 0, 'inc', 'Ev', K_INCDEC, 0, MODRM | LOCKOK)
    row(0, 0xFF, 1, 'dec', 'Ev', K_INCDEC, 32, MODRM | LOCKOK)
    row(0, 0xFF, 2, 'call', 'Ev', K_BRANCH, 3, MODRM | FORCE64)
    row(0, 0xFF, 3, 'call', 'Mp', K_BRANCH, 9, MODRM | MEMONLY)
    row(0, 0xFF, 4, 'jmp', 'Ev', K_BRANCH, 1, MODRM | FORCE64)
    row(0, 0xFF, 5, 'jmp', 'Mp', K_BRANCH, 10, MODRM | MEMONLY)
    row(0, 0xFF, 6, 'push', 'Ev', K_PUSH, 2, MODRM | DEF64)


def _two_byte():
    row(1, 0x00, 0, 'sldt', 'Ew', K_SYS, 0, MODRM)
    row(1, 0x00, 1, 'str', 'Ew', K_SYS, 1, MODRM)
    row(1, 0x00, 2, 'lldt', 'Ew', K_SYS, 2, MODRM | SIZE16)
    row(1, 0x00, 3, 'ltr', 'Ew', K_SYS, 3, MODRM | SIZE16)
    row(1, 0x00, 4, 'verr', 'Ew', K_SYS, 4, MODRM | SIZE16)
    row(1, 0x00, 5, 'verw', 'Ew', K_SYS, 5, MODRM | SIZE16)
    row(1, 0x01, 0, 'sgdt', 'M', K_SYS, 6, MODRM)
    row(1, 0x01, 1, 'sidt', 'M', K_SYS, 7, MODRM)
    row(1, 0x01, 2, 'lgdt', 'M', K_SYS, 8, MODRM)
    row(1, 0x01, 3, 'lidt', 'M', K_SYS, 9, MODRM)
    row(1, 0x01, 4, 'smsw', 'Ew', K_SYS, 10, MODRM)
    row(1, 0x01, 6, 'lmsw', 'Ew', K_SYS, 11, MODRM | SIZE16)
    row(1, 0x01, 7, 'invlpg', 'M', K_SYS, 12, MODRM)       # reg forms: swapgs, rdtscp
    row(1, 0x02, None, 'lar', 'Gv,Ew', K_SYS, 13, MODRM)
    row(1, 0x03, None, 'lsl', 'Gv,Ew', K_SYS, 14, MODRM)
    row(1, 0x05, None, 'syscall', '', K_FAST_SYS, 0, 0)
    row(1, 0x06, None, 'clts', '', K_SYS, 15, 0)
    row(1, 0x07, None, 'sysret', '', K_FAST_SYS, 1, 0)
    row(1, 0x08, None, 'invd', '', K_SYS, 16, 0)
    row(1, 0x09, None, 'wbinvd', '', K_SYS, 16, 0)
    row(1, 0x0B, None, 'ud2', '', K_UD, 0, 0)
    row(1, 0x0D, None, 'nop', 'Ev', K_MISC, 4, MODRM)       # prefetchw
    for opc in range(0x18, 0x20):
        row(1, opc, None, 'nop', 'Ev', K_MISC, 4, MODRM)   # hint nops, endbr (F3 0F 1E FA)
    row(1, 0x20, None, 'mov', 'Rd,Cd', K_CRDR, 0, MODRM | FORCEREG)
    row(1, 0x21, None, 'mov', 'Rd,Dd', K_CRDR, 1, MODRM | FORCEREG)
    row(1, 0x22, None, 'mov', 'Cd,Rd', K_CRDR, 2, MODRM | FORCEREG)
    row(1, 0x23, None, 'mov', 'Dd,Rd', K_CRDR, 3, MODRM | FORCEREG)
    row(1, 0x30, None, 'wrmsr', '', K_SYS, 17, 0)
    row(1, 0x31, None, 'rdtsc', '', K_MISC, 5, 0)
    row(1, 0x32, None, 'rdmsr', '', K_SYS, 18, 0)
    row(1, 0x34, None, 'sysenter', '', K_FAST_SYS, 2, 0)
    row(1, 0x35, None, 'sysexit', '', K_FAST_SYS, 3, 0)
    for cc in range(16):
        row(1, 0x40 + cc, None, 'cmov' + CC_NAMES[cc], 'Gv,Ev', K_CMOV, cc, MODRM)
        row(1, 0x80 + cc, None, 'j' + CC_NAMES[cc], 'Jz', K_JCC, cc, FORCE64, I_Z)
        row(1, 0x90 + cc, None, 'set' + CC_NAMES[cc], 'Eb', K_SETCC, cc, MODRM | BYTE)
    row(1, 0xA0, None, 'push', 'FS', K_PUSH, 16 + 4, DEF64)
    row(1, 0xA1, None, 'pop', 'FS', K_POP, 16 + 4, DEF64)
    row(1, 0xA2, None, 'cpuid', '', K_MISC, 6, 0)
    row(1, 0xA3, None, 'bt', 'Ev,Gv', K_BIT, 0, MODRM)
    row(1, 0xA4, None, 'shld', 'Ev,Gv,Ib', K_SHXD, 0, MODRM, I_B)
    row(1, 0xA5, None, 'shld', 'Ev,Gv,CL', K_SHXD, 2, MODRM)
    row(1, 0xA8, None, 'push', 'GS', K_PUSH, 16 + 5, DEF64)
    row(1, 0xA9, None, 'pop', 'GS', K_POP, 16 + 5, DEF64)
    row(1, 0xAB, None, 'bts', 'Ev,Gv', K_BIT, 1, MODRM | LOCKOK)
    row(1, 0xAC, None, 'shrd', 'Ev,Gv,Ib', K_SHXD, 1, MODRM, I_B)
    row(1, 0xAD, None, 'shrd', 'Ev,Gv,CL', K_SHXD, 3, MODRM)
    row(1, 0xAE, None, 'grp15', 'M', K_MISC, 8, MODRM)      # fences / rd-wrfsbase; others unsupported
    row(1, 0xAF, None, 'imul', 'Gv,Ev', K_IMUL, 0, MODRM)
    row(1, 0xB0, None, 'cmpxchg', 'Eb,Gb', K_ATOMIC, 0, MODRM | BYTE | LOCKOK)
    row(1, 0xB1, None, 'cmpxchg', 'Ev,Gv', K_ATOMIC, 0, MODRM | LOCKOK)
    row(1, 0xB2, None, 'lss', 'Gz,Mp', K_MOVSEG, 3, MODRM | MEMONLY)
    row(1, 0xB3, None, 'btr', 'Ev,Gv', K_BIT, 2, MODRM | LOCKOK)
    row(1, 0xB4, None, 'lfs', 'Gz,Mp', K_MOVSEG, 6, MODRM | MEMONLY)
    row(1, 0xB5, None, 'lgs', 'Gz,Mp', K_MOVSEG, 7, MODRM | MEMONLY)
    row(1, 0xB6, None, 'movzx', 'Gv,Eb', K_MOVX, 0, MODRM)
    row(1, 0xB7, None, 'movzx', 'Gv,Ew', K_MOVX, 1, MODRM)
    row(1, 0xB8, None, 'popcnt', 'Gv,Ev', K_BIT, 10, MODRM)   # needs F3
    row(1, 0xBA, 4, 'bt', 'Ev,Ib', K_BIT, 4, MODRM, I_B)
    row(1, 0xBA, 5, 'bts', 'Ev,Ib', K_BIT, 5, MODRM | LOCKOK, I_B)
    row(1, 0xBA, 6, 'btr', 'Ev,Ib', K_BIT, 6, MODRM | LOCKOK, I_B)
    row(1, 0xBA, 7, 'btc', 'Ev,Ib', K_BIT, 7, MODRM | LOCKOK, I_B)
    row(1, 0xBB, None, 'btc', 'Ev,Gv', K_BIT, 3, MODRM | LOCKOK)
    row(1, 0xBC, None, 'bsf', 'Gv,Ev', K_BIT, 8, MODRM)      # tzcnt with F3
    row(1, 0xBD, None, 'bsr', 'Gv,Ev', K_BIT, 9, MODRM)      # lzcnt with F3
    row(1, 0xBE, None, 'movsx', 'Gv,Eb', K_MOVX, 2, MODRM)
    row(1, 0xBF, None, 'movsx', 'Gv,Ew', K_MOVX, 3, MODRM)
    row(1, 0xC0, None, 'xadd', 'Eb,Gb', K_ATOMIC, 1, MODRM | BYTE | LOCKOK)
    row(1, 0xC1, None, 'xadd', 'Ev,Gv', K_ATOMIC, 1, MODRM | LOCKOK)
    row(1, 0xC7, 1, 'cmpxchg8b', 'Mq', K_ATOMIC, 2, MODRM | MEMONLY | LOCKOK)
    row(1, 0xC7, 6, 'rdrand', 'Rv', K_UNSUP, 0, MODRM)
    for r in range(8):
        row(1, 0xC8 + r, None, 'bswap', 'Zv', K_MISC, 7, 0)


_one_byte()
_two_byte()

N_ENTRIES = 2 * 256 * 8


def build():
    kind = np.zeros(N_ENTRIES, np.int64)            # K_INVALID -> #UD
    # the 0F map outside the table is SSE/MMX/AVX/VMX territory: an emulation failure,
    # except the opcodes that are undefined on every x86-64 CPU (#UD)
    kind[2048:4096] = K_UNSUP
    for opc in (0x04, 0x0A, 0x0C, 0x0E, 0x0F, 0x24, 0x25, 0x26, 0x27, 0x36, 0x39, 0x3B, 0x3C, 0x3D,
                0x3E, 0x3F, 0xA6, 0xA7, 0xB9, 0xFF):
        kind[2048 + opc * 8:2048 + opc * 8 + 8] = K_INVALID
    sub = np.zeros(N_ENTRIES, np.int64)
    flags = np.zeros(N_ENTRIES, np.int64)
    imm = np.zeros(N_ENTRIES, np.int64)
    names = [''] * N_ENTRIES
    ops = [''] * N_ENTRIES
    # opcodes with a ModRM byte even when invalid (so length is right for #UD)
    for r in ROWS:
        mp, opc, reg, mn, o, k, s, fl, im = r
        regs = range(8) if reg is None else [reg]
        for g in regs:
            i = mp * 2048 + opc * 8 + g
            kind[i], sub[i], flags[i], imm[i] = k, s, fl, im
            names[i], ops[i] = mn, o
    # group opcodes: undefined reg values still have a ModRM byte
    for mp, opc in ((0, 0x8F), (0, 0xC6), (0, 0xC7), (0, 0xFE), (0, 0xFF), (1, 0x00), (1, 0x01),
                    (1, 0xBA), (1, 0xC7)):
        for g in range(8):
            i = mp * 2048 + opc * 8 + g
            flags[i] |= MODRM
    return kind, sub, flags, imm, names, ops


OP_KIND, OP_SUB, OP_FLAGS, OP_IMM, OP_NAMES, OP_OPS = build()
