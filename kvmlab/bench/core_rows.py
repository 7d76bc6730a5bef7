"""Benchmarks of the simulated CPU itself (kvmlab.cpu), below the KVM API: the exit round
trip at the core boundary, and how long a fresh process takes to run its first instruction
(warm numba cache) or to compile the core (empty cache, only with ``--compile``)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from ..asm import assemble

OUT_LOOP = assemble(".code16\n1: out 0x80, al\n jmp 1b\n", base=0x1000).code


def core_exits_per_s(n: int) -> float:
    """OUT exits per second through ``Core.run()`` in a Python loop: the core exits, Python
    sees the exit code, and re-enters (no KVM layer, no kvm_run page)."""
    import numpy as np
    from ..cpu import Core, PhysMap, EXIT_IO

    mem = np.zeros(0x10000, np.uint8)
    mem[0x1000:0x1000 + len(OUT_LOOP)] = np.frombuffer(OUT_LOOP, np.uint8)
    pm = PhysMap()
    pm.set_slot(0, 0, mem)
    core = Core(pm)
    regs = core.get_regs()
    regs.rip = 0x1000
    core.set_regs(regs)
    sregs = core.get_sregs()
    sregs.cs.base, sregs.cs.selector = 0, 0
    core.set_sregs(sregs)
    run = core.run
    assert run(1000) == EXIT_IO
    t = time.perf_counter()
    for _ in range(n):
        run(1000)
    return n / (time.perf_counter() - t)


_FIRST_INSN = ("import time; t = time.perf_counter(); import kvmlab; "
               "from kvmlab.cpu import Core, PhysMap; Core(PhysMap()).run(1); "
               "print(time.perf_counter() - t)")


def first_instruction_s(cache_dir: str | None = None) -> float:
    """Seconds from ``import kvmlab`` to the first executed instruction in a fresh Python
    process (measured inside that process).  With cache_dir, the core's numba cache lives
    there (an empty directory measures a cold compile)."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["KVMLAB_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", _FIRST_INSN], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def cold_compile_s() -> float:
    """Seconds a fresh process with an empty numba cache takes to run its first instruction."""
    with tempfile.TemporaryDirectory(prefix="kvmlab-cold-") as d:
        return first_instruction_s(d)
