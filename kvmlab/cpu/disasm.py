"""Disassembly text from the instruction table (optable) and the core's own decoder, so
the text shows exactly what the core decoded (Intel syntax, lower case)."""
import numpy as np

from . import layout as L
from .optable import OP_NAMES, OP_OPS

_R64 = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi'] + ['r%d' % i for i in range(8, 16)]
_R32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi'] + ['r%dd' % i for i in range(8, 16)]
_R16 = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'] + ['r%dw' % i for i in range(8, 16)]
_R8 = ['al', 'cl', 'dl', 'bl', 'spl', 'bpl', 'sil', 'dil'] + ['r%db' % i for i in range(8, 16)]
_R8L = ['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh']
_SEGS = ['es', 'cs', 'ss', 'ds', 'fs', 'gs']
_PTR = {1: 'byte', 2: 'word', 4: 'dword', 8: 'qword'}


def _reg(n, size, rex):
    if size == 8:
        return _R64[n]
    if size == 4:
        return _R32[n]
    if size == 2:
        return _R16[n]
    return _R8[n] if rex else _R8L[n]


def _addr_reg(n, asz):
    return {8: _R64, 4: _R32, 2: _R16}[asz][n]


def decode_one(code, bits):
    """The decoded record (dict of D fields) of the first instruction in code, or None."""
    from .decode import decode
    st = np.zeros(L.STATE_SIZE, np.int64)
    b = bytes(code[:15])
    st[L.IB:L.IB + len(b)] = list(b)
    st[L.IB_N] = len(b)
    st[L.PROT] = 1 if bits != 16 else 0
    n = decode(st, 1 if bits == 64 else 0, 1 if bits == 32 else 0)
    if n <= 0:
        return None
    names = ('kind sub len osz asz seg mod reg rm base index scale disp imm imm2 rep lock rex '
             'opc map flags segovr pfx66').split()
    return {k: int(st[L.D + i]) for i, k in enumerate(names)}


def disasm(code, bits, address=0):
    """[(address, length, text)] for the instructions in code."""
    out = []
    pos = 0
    while pos < len(code):
        d = decode_one(code[pos:pos + 15], bits)
        if d is None:
            out.append((address + pos, 1, '(bad)'))
            pos += 1
            continue
        out.append((address + pos, d['len'], _text(d, address + pos)))
        pos += d['len']
    return out


def _mem(d):
    asz = d['asz']
    parts = []
    if d['base'] == -2:
        parts.append('rip')
    elif d['base'] >= 0:
        parts.append(_addr_reg(d['base'], asz))
    if d['index'] >= 0:
        parts.append('%s*%d' % (_addr_reg(d['index'], asz), 1 << d['scale']))
    disp = d['disp']
    s = ' + '.join(parts)
    if disp or not parts:
        s = (s + (' - ' if disp < 0 and parts else ' + ' if parts else '') + hex(abs(disp) if parts else disp & ((1 << (8 * asz)) - 1)))
    seg = _SEGS[d['segovr']] + ':' if d['segovr'] >= 0 else ''
    return '%s ptr %s[%s]' % (_PTR.get(d['osz'], ''), seg, s)


def _text(d, address):
    ent = d['map'] * 2048 + d['opc'] * 8 + (d['reg'] & 7)
    name = OP_NAMES[ent] or '(bad)'
    spec = OP_OPS[ent]
    if not spec:
        return name
    rex = d['rex'] != 0
    osz = d['osz']
    ops = []
    for o in spec.split(','):
        if o[0] in 'EM':
            size = {'b': 1, 'w': 2}.get(o[1:2], osz)
            if d['mod'] == 3:
                ops.append(_reg(d['rm'], size, rex))
            else:
                dd = dict(d)
                dd['osz'] = size
                ops.append(_mem(dd))
        elif o[0] == 'G':
            ops.append(_reg(d['reg'], {'b': 1, 'w': 2}.get(o[1:2], osz), rex))
        elif o[0] == 'Z':
            ops.append(_reg(d['rm'], 1 if o[1:2] == 'b' else osz, rex))
        elif o[0] == 'J':
            ops.append(hex((address + d['len'] + d['imm']) & ((1 << 64) - 1)))
        elif o[0] == 'I':
            ops.append(hex(d['imm'] & ((1 << (8 * min(osz, 8))) - 1)))
        elif o[0] == 'S':
            ops.append(_SEGS[d['reg'] & 7] if (d['reg'] & 7) < 6 else '?')
        elif o[0] == 'O':
            ops.append('[%s]' % hex(d['imm'] & ((1 << (8 * d['asz'])) - 1)))
        elif o == 'AL':
            ops.append('al')
        elif o == 'eAX':
            ops.append(_reg(0, osz, rex))
        elif o == 'DX':
            ops.append('dx')
        elif o == 'CL':
            ops.append('cl')
        else:
            ops.append(o.lower())
    return '%s %s' % (name, ', '.join(ops))
