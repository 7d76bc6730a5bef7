"""``python -m kvmlab.cpu``: compile the CPU core into the numba cache (or load it) and say
how long that took.  CI and the set-up scripts run it once before starting many processes,
so that they all find a warm cache."""
import time

t0 = time.perf_counter()
from . import CACHE_DIR, Core, PhysMap  # noqa: E402

Core(PhysMap()).run(1)
print(f"kvmlab.cpu: ready in {time.perf_counter() - t0:.1f} s (cache: {CACHE_DIR})")
