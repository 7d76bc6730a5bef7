"""Run the benchmark table: ``python -m kvmlab.bench [--quick] [--backends hw,sim] [--json] [--compile]``."""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from . import core_rows, kvm_rows, unicorn_ref
from .loops import instructions

MODES = ("real", "protected", "long")
KINDS = ("tight", "alu+mem")


def median(f, repeats):
    return statistics.median(f() for _ in range(repeats))


def backend_ok(name: str) -> str | None:
    import kvmlab
    try:
        kvmlab.open(name).close()
    except Exception as e:  # BackendUnavailable, or a simulator that cannot start
        return str(e)
    return None


def guest_mips(backend: str, kind: str, mode: str, iterations: int) -> float:
    from .guest_loops import seconds
    return instructions(kind, iterations) / seconds(backend, kind, mode, iterations) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvmlab.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and iterations (a smoke run)")
    ap.add_argument("--backends", default="hw,sim", help="comma-separated: hw, sim (unavailable ones are reported and skipped)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--compile", action="store_true", help="also measure a cold compile of the CPU core (minutes)")
    a = ap.parse_args(argv)
    reps = 3 if a.quick else 5
    scale = 0.1 if a.quick else 1.0

    backends, skipped = [], {}
    for b in a.backends.split(","):
        why = backend_ok(b)
        (skipped.__setitem__(b, why) if why else backends.append(b))
    cols = backends + ([] if unicorn_ref.available() else ["unicorn"])

    # iterations per backend: the emulated real/32-bit paths of some KVMs run ~2 MIPS
    iters = {"hw": int(2_000_000 * scale), "sim": int(20_000_000 * scale), "unicorn": int(20_000_000 * scale)}
    rows = []

    def row(name, unit, values, higher_is_better=True):
        rows.append({"metric": name, "unit": unit, **values, "_hib": higher_is_better})
        print(_fmt(rows[-1], cols), flush=True)

    print(_header(cols))
    for mode in MODES:
        for kind in KINDS:
            vals = {}
            for c in cols:
                n = iters[c]
                if c == "unicorn":
                    vals[c] = median(lambda: unicorn_ref.mips(kind, mode, n), reps)
                else:
                    vals[c] = median(lambda: guest_mips(c, kind, mode, n), reps)
            row(f"guest {kind} loop, {mode} mode", "MIPS", vals)
    n_exit = {"hw": int(20_000 * scale) or 2000, "sim": int(200_000 * scale)}
    for name, f in (("PIO exit round trips", kvm_rows.pio_exits_per_s),
                    ("MMIO exit round trips", kvm_rows.mmio_exits_per_s)):
        row(f"{name} via VcpuFd.run()", "1/s", {b: median(lambda: f(b, n_exit[b]), reps) for b in backends})
    n_coal = {"hw": int(200_000 * scale), "sim": int(2_000_000 * scale)}
    row("coalesced MMIO writes", "1/s", {b: median(lambda: kvm_rows.coalesced_writes_per_s(b, n_coal[b]), reps) for b in backends})
    row("create VM + 256 MiB slot + vCPU", "ms", {b: median(lambda: kvm_rows.create_ms(b), reps) for b in backends}, False)
    if "sim" in backends:
        row("core exit round trips via Core.run()", "1/s",
            {"sim": median(lambda: core_rows.core_exits_per_s(int(1_000_000 * scale)), reps)})
        row("fresh process: import to 1st insn", "s", {"sim": median(core_rows.first_instruction_s, reps)}, False)
        if a.compile:
            row("fresh process, empty cache (compile)", "s", {"sim": core_rows.cold_compile_s()}, False)

    for b, why in skipped.items():
        print(f"\n{b}: not measured: {why}")
    if a.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "_hib"} for r in rows], indent=1))
    return 0


def _header(cols):
    ratios = _ratio_pairs(cols)
    return f"{'metric':44} {'unit':5} " + " ".join(f"{c:>12}" for c in cols) + "".join(f" {a + '/' + b:>12}" for a, b in ratios)


def _ratio_pairs(cols):
    pairs = []
    if "sim" in cols and "hw" in cols:
        pairs.append(("sim", "hw"))
    if "sim" in cols and "unicorn" in cols:
        pairs.append(("sim", "unicorn"))
    if "hw" in cols and "unicorn" in cols:
        pairs.append(("hw", "unicorn"))
    return pairs


def _fmt(r, cols):
    def num(v):
        return f"{v:12.1f}" if v < 1e5 else f"{v:12.3g}"
    s = f"{r['metric']:44} {r['unit']:5} " + " ".join(num(r[c]) if c in r else f"{'-':>12}" for c in cols)
    for a, b in _ratio_pairs(cols):
        s += f" {r[a] / r[b]:12.2f}" if a in r and b in r and r[b] else f" {'-':>12}"
    return s


if __name__ == "__main__":
    sys.exit(main())
