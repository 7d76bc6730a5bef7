"""The guest loops the benchmark runs, the same source for every backend and for unicorn.

Each loop runs ``ecx`` iterations of a fixed number of instructions, then writes to port
0xf4 (the debug-exit port) and halts, so the instruction count is known exactly:
``INSNS_PER_ITER * iterations + SETUP_INSNS``.
"""
from __future__ import annotations

from ..asm import assemble

# name -> (body, instructions per iteration)
LOOPS = {
    "tight": ("""
1:  dec ecx
    jnz 1b
""", 2),
    "alu+mem": ("""
1:  mov eax, dword ptr [{si}]
    add eax, ecx
    mov dword ptr [{si} + 4], eax
    xor edx, eax
    dec ecx
    jnz 1b
""", 6),
}

BITS = {"real": 16, "protected": 32, "long": 64}
DATA = 0x3000          # the loops' data lives at GPA 0x3000 (identity mapped in every mode)


def source(kind: str, mode: str, iterations: int) -> str:
    body, _ = LOOPS[kind]
    si = {"real": "esi", "protected": "esi", "long": "rsi"}[mode]
    return f"""
.intel_syntax noprefix
.code{BITS[mode]}
_start:
    mov ecx, {iterations}
    mov esi, {DATA}
{body.format(si=si)}
    out 0xf4, al
    hlt
"""


def program(kind: str, mode: str, iterations: int, base: int = 0x1000):
    return assemble(source(kind, mode, iterations), base=base, mode=mode)


def instructions(kind: str, iterations: int) -> int:
    """Guest instructions executed by one run of the loop (up to and including the OUT)."""
    return LOOPS[kind][1] * iterations + 3
