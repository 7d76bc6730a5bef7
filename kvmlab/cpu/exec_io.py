"""Executors for string instructions (MOVS CMPS STOS LODS SCAS INS OUTS, with REP) and
port I/O (IN/OUT).  Reference §8.3: `rep outs` exits once per element with rip kept on
the instruction until rcx reaches 0; `rep ins` exits with count = min(rcx, elements to the
page boundary in the direction of DF, 1024/size) and writes them all on completion.
I/O permission: when CPL > IOPL in protected mode, the TSS I/O bitmap (io_allowed).
"""
from .jit import njit, ix
from .layout import *  # noqa: F401,F403
from .alu import msk, sub_op
from .access import get_reg, set_reg, rd, wr, snapshot, check_wr, seg_lin, sys_read
from .mmu import raise_exc
from .physmem import coalesce, exit_data_put


@njit
def io_allowed(st, pm, port, size):
    """I/O permission: CPL <= IOPL, else every bit of ports port..port+size-1 clear in the
    TSS I/O bitmap (base at TSS offset 0x66, two bytes read at base + port/8; as KVM's
    emulator_io_port_access_allowed: #GP(0) when the TSS limit is below 0x67 or the first
    of those bytes lies beyond it; a 16-bit TSS has no bitmap)."""
    if st[PROT] == 0 or (((st[RFLAGS] >> 12) & 3) >= st[CPL] and (st[RFLAGS] & F_VM) == 0):
        return True
    tr = SEG + 4 * TR
    t = st[ix(tr + ATTR)] & 0xF
    lim = st[ix(tr + LIMIT)]
    if (t == 9 or t == 0xB) and (st[ix(tr + ATTR)] & A_P) != 0 and lim >= 0x67:
        tb = st[ix(tr + BASE)]
        iob = sys_read(st, pm, tb + 0x66, 2)
        if st[ABORT] != 0:
            return False
        a = iob + (port >> 3)
        if a <= lim:
            perm = sys_read(st, pm, tb + a, 2)
            if st[ABORT] != 0:
                return False
            if ((perm >> (port & 7)) & ((1 << size) - 1)) == 0:
                return True
    raise_exc(st, GP, 0)
    return False


@njit
def io_out(st, pm, port, size, v):
    if coalesce(st, pm, port, size, v, 1):
        return
    st[EXIT_REASON] = EXIT_IO
    st[IO_DIR] = 1
    st[IO_SIZE] = size
    st[IO_PORT] = port
    st[IO_COUNT] = 1
    exit_data_put(st, size, v)
    st[EXIT_PENDING] = EXIT_IO
    st[ix(STAT + ST_IO)] += 1


@njit
def io_in_ready(st, port, size, count):
    """True when the completion data of this IN is present; otherwise record the exit."""
    if st[COMP_KIND] == 1 and st[COMP_GPA] == port and st[COMP_N] == size * count:
        st[COMP_KIND] = 0
        return True
    st[EXIT_REASON] = EXIT_IO
    st[IO_DIR] = 0
    st[IO_SIZE] = size
    st[IO_PORT] = port
    st[IO_COUNT] = count
    st[EXIT_PENDING] = EXIT_IO
    st[ABORT] = 1
    st[ix(STAT + ST_IO)] += 1
    return False


@njit
def comp_value(st, i, size):
    v = 0
    for k in range(size):
        v |= (st[ix(COMP_DATA + i * size + k)] & 0xFF) << (8 * k)
    return v


@njit
def x_io(st, pm):
    d = D
    sub = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    if size == 8:
        size = 4
    port = st[ix(d + D_IMM)] & 0xFF if sub < 2 else st[RDX] & 0xFFFF
    if not io_allowed(st, pm, port, size):
        return
    if (sub & 1) == 1:
        io_out(st, pm, port, size, get_reg(st, RAX, size))
        return
    if io_in_ready(st, port, size, 1):
        set_reg(st, RAX, size, comp_value(st, 0, size))


@njit
def x_string(st, pm):
    d = D
    op = st[ix(d + D_SUB)]
    size = st[ix(d + D_OSZ)]
    asz = st[ix(d + D_ASZ)]
    rep = st[ix(d + D_REP)]
    am = msk(asz)
    delta = -size if (st[RFLAGS] & F_DF) != 0 else size
    sseg = st[ix(d + D_SEG)]
    if op == 5 or op == 6:
        if size == 8:
            size = 4
            delta = -4 if delta < 0 else 4
        if not io_allowed(st, pm, st[RDX] & 0xFFFF, size):
            return
    n = 0
    while True:
        c = 0
        if rep != 0:
            c = get_reg(st, RCX, asz)
            if c == 0:
                return
        si = get_reg(st, RSI, asz)
        di = get_reg(st, RDI, asz)
        if op == 0:       # MOVS
            v = rd(st, pm, sseg, si, size)
            if st[ABORT] != 0:
                return
            wr(st, pm, ES, di, size, v)
            if st[ABORT] != 0:
                return
            set_reg(st, RSI, asz, (si + delta) & am)
            set_reg(st, RDI, asz, (di + delta) & am)
        elif op == 1:     # CMPS
            a = rd(st, pm, sseg, si, size)
            b = rd(st, pm, ES, di, size)
            if st[ABORT] != 0:
                return
            sub_op(st, a, b, 0, size)
            set_reg(st, RSI, asz, (si + delta) & am)
            set_reg(st, RDI, asz, (di + delta) & am)
        elif op == 2:     # STOS
            wr(st, pm, ES, di, size, get_reg(st, RAX, size))
            if st[ABORT] != 0:
                return
            set_reg(st, RDI, asz, (di + delta) & am)
        elif op == 3:     # LODS
            v = rd(st, pm, sseg, si, size)
            if st[ABORT] != 0:
                return
            set_reg(st, RAX, size, v)
            set_reg(st, RSI, asz, (si + delta) & am)
        elif op == 4:     # SCAS
            b = rd(st, pm, ES, di, size)
            if st[ABORT] != 0:
                return
            sub_op(st, get_reg(st, RAX, size), b, 0, size)
            set_reg(st, RDI, asz, (di + delta) & am)
        elif op == 5:     # INS
            port = st[RDX] & 0xFFFF
            cnt = 1
            if rep != 0:
                lin = seg_lin(st, ES, di, size, 1)
                if st[ABORT] != 0:
                    return
                if delta > 0:
                    room = (0x1000 - (lin & 0xFFF)) // size
                else:
                    room = (lin & 0xFFF) // size + 1
                if room < 1:
                    room = 1
                cnt = min(c, room, 1024 // size)
                if cnt < 1:
                    cnt = 1
            # the destination must be writable before the port is read
            check_wr(st, pm, ES, di, size)
            if cnt > 1:
                check_wr(st, pm, ES, (di + delta * (cnt - 1)) & am, size)
            if st[ABORT] != 0:
                return
            if not io_in_ready(st, port, size, cnt):
                return
            for k in range(cnt):
                wr(st, pm, ES, (di + delta * k) & am, size, comp_value(st, k, size))
                if st[ABORT] != 0:
                    return
            set_reg(st, RDI, asz, (di + delta * cnt) & am)
            if rep != 0:
                set_reg(st, RCX, asz, c - cnt)
                if c - cnt != 0:
                    st[NEXT_RIP] = st[INSN_RIP]
            return
        else:             # OUTS
            v = rd(st, pm, sseg, si, size)
            if st[ABORT] != 0:
                return
            io_out(st, pm, st[RDX] & 0xFFFF, size, v)
            set_reg(st, RSI, asz, (si + delta) & am)
            if rep != 0:
                set_reg(st, RCX, asz, c - 1)
                if c - 1 != 0:
                    st[NEXT_RIP] = st[INSN_RIP]
            return
        if rep == 0:
            return
        c -= 1
        set_reg(st, RCX, asz, c)
        snapshot(st)
        n += 1
        if c == 0:
            return
        if op == 1 or op == 4:
            zf = (st[RFLAGS] & F_ZF) != 0
            if (rep == 2 and not zf) or (rep == 1 and zf):
                return
        if st[EXIT_PENDING] != 0 or n >= 512:
            st[NEXT_RIP] = st[INSN_RIP]
            return
