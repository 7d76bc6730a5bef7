"""Finding the guest instruction behind an exit: read guest memory at a linear address
(through the guest's page tables) and disassemble it with capstone."""
from __future__ import annotations

from .. import asm
from ..vmm import pagewalk


def cpu_bits(sregs) -> int:
    """16, 32 or 64: the code size the CPU uses now (CR0.PE, CS.L, CS.D)."""
    if not sregs.cr0 & 1:
        return 16
    if sregs.cs.l and sregs.efer & (1 << 10):
        return 64
    return 32 if sregs.cs.db else 16


def read_linear(vm, sregs, linear: int, n: int) -> bytes:
    """Up to ``n`` bytes at a linear address (fewer where a page is unmapped or a hole)."""
    phys = pagewalk.PhysMem(vm)
    out = b""
    while len(out) < n:
        la = (linear + len(out)) & (2**64 - 1)
        w = pagewalk.walk(phys, la, cr0=sregs.cr0, cr3=sregs.cr3, cr4=sregs.cr4, efer=sregs.efer)
        if not w.ok:
            break
        chunk = min(n - len(out), 0x1000 - (la & 0xFFF))
        data = phys.read(w.gpa, chunk)
        if data is None:
            break
        out += data
    return out


def insn_at(vm, sregs, linear: int):
    """The :class:`kvmlab.asm.Insn` at ``linear``, or None."""
    code = read_linear(vm, sregs, linear, 15)
    got = asm.disassemble(code, linear, cpu_bits(sregs), 1) if code else []
    return got[0] if got else None


def _matches(insn, reason: str) -> bool:
    m = insn.mnemonic.split()[-1]
    if reason == "IO":      # not startswith("in"): inc and int are no port I/O
        return m in ("in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd")
    if reason == "MMIO":
        return "[" in insn.op_str or m.startswith(("movs", "stos", "lods", "cmps", "scas"))
    if reason == "HLT":
        return m == "hlt"
    return True


def cause(vm, sregs, rip: int, reason: str):
    """``(insn, where)``: the instruction that made an exit with this ``reason`` when KVM
    reported ``rip``.  KVM may report rip at the instruction (IN, MMIO read) or already
    past it (OUT, MMIO write, HLT); ``where`` says which ("at rip" / "before rip")."""
    base = sregs.cs.base if cpu_bits(sregs) != 64 else 0
    linear = base + rip
    here = insn_at(vm, sregs, linear)
    if reason in ("DEBUG", "INTR") or (here is not None and _matches(here, reason)):
        return here, "at rip"
    code = read_linear(vm, sregs, max(linear - 15, 0), min(15, linear))
    bits = cpu_bits(sregs)
    for k in range(1, len(code) + 1):
        got = asm.disassemble(code[len(code) - k:], linear - k, bits, 1)
        if got and got[0].size == k and _matches(got[0], reason):
            return got[0], "before rip"
    return here, "at rip"


def symbolize(program, addr: int) -> str | None:
    """``"puts+0x5"`` for an address inside ``program`` (a kvmlab.asm.Program), else None."""
    if program is None or not program.base <= addr < program.end:
        return None
    best = max(((a, n) for n, a in program.symbols.items() if program.base <= a <= addr), default=None)
    return None if best is None else (best[1] if best[0] == addr else f"{best[1]}+{addr - best[0]:#x}")
