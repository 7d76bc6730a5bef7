"""unicorn (QEMU's TCG) running the same guest loops: the outside reference for guest MIPS."""
from __future__ import annotations

import time

from .loops import BITS, instructions, program


def run_loop(kind: str, mode: str, iterations: int) -> float:
    """Seconds unicorn takes for one run of the loop (no hooks)."""
    import unicorn as uc
    from unicorn import x86_const as x

    prog = program(kind, mode, iterations)
    m = uc.Uc(uc.UC_ARCH_X86, {16: uc.UC_MODE_16, 32: uc.UC_MODE_32, 64: uc.UC_MODE_64}[BITS[mode]])
    m.mem_map(0, 0x10000)
    m.mem_write(prog.base, prog.code)
    out_at = prog.base + prog.code.index(b"\xe6\xf4")   # stop at the OUT
    t = time.perf_counter()
    m.emu_start(prog.entry, out_at)
    dt = time.perf_counter() - t
    assert m.reg_read(x.UC_X86_REG_ECX) == 0
    return dt


def available() -> str | None:
    try:
        import unicorn  # noqa: F401
    except ImportError:
        return "unicorn is not installed (pip install kvmlab[test])"
    return None


def mips(kind: str, mode: str, iterations: int) -> float:
    return instructions(kind, iterations) / run_loop(kind, mode, iterations) / 1e6
