"""Guest MIPS on a KVM backend: the loops of :mod:`.loops` in a ``Machine`` of each mode
(long mode with 4-level paging on), timed from ``run()`` to the debug-exit OUT.  The first
run of each backend and mode in a process is an untimed warm-up: it loads the compiled core
from numba's cache (a few tenths of a second that the first row would otherwise pay)."""
from __future__ import annotations

import time

from ..vmm import Machine
from .loops import program


_warm: set = set()


def seconds(backend: str, kind: str, mode: str, iterations: int) -> float:
    if (backend, mode) not in _warm:
        _warm.add((backend, mode))
        seconds(backend, kind, mode, 1000)
    prog = program(kind, mode, iterations)
    with Machine(mode=mode, backend=backend) as m:
        m.load(prog)
        t = time.perf_counter()
        result = m.run(max_exits=10, timeout=600)
        dt = time.perf_counter() - t
    if result.stop_reason != "debug_exit":
        raise RuntimeError(f"the {kind} loop in {mode} mode on {backend} stopped with {result.stop_reason}, not at the debug-exit port")
    return dt
