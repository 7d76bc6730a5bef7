"""Helpers shared by the sim-vs-hw differential tests (tests/test_differential_*.py).

* :func:`require_both` skips the calling test with a clear reason unless both backends
  can be opened (/dev/kvm usable, the simulator importable) and are selected by
  ``KVMLAB_DIFF_BACKENDS`` (default ``"hw,sim"``).
* :func:`host_flavour` says which KVM vendor module backs /dev/kvm here: "pvm" (reference
  §0: facts tagged [PVM] apply), "intel", "amd" or "unknown".  :func:`sim_vendor` is the
  simulated ``kvm_x86_ops`` flavour to compare it with (PVM keeps the vCPU state at
  SHUTDOWN as VMX does, SVM INIT-resets it).
* :func:`diff` lists the differences between two nested dict/list values as readable
  ``path: hw=... sim=...`` lines, for assertion messages.
"""
from __future__ import annotations

import os

import pytest

import kvmlab

BACKENDS = ("hw", "sim")
_warm: set[str] = set()


def selected() -> list[str]:
    raw = os.environ.get("KVMLAB_DIFF_BACKENDS", "hw,sim")
    return [b.strip() for b in raw.split(",") if b.strip()]


def unavailable_reason() -> str | None:
    """None if both backends can be used, else why not (a sentence)."""
    for name in BACKENDS:
        if name not in selected():
            return (f"the differential tests need both backends; {name!r} is not in "
                    f"KVMLAB_DIFF_BACKENDS={os.environ.get('KVMLAB_DIFF_BACKENDS')!r}")
    from kvmlab.hw import unusable_reason
    why = unusable_reason()
    if why:
        return f"the differential tests compare the simulator with /dev/kvm: {why}"
    try:
        kvmlab.open("sim").close()
    except kvmlab.BackendUnavailable as e:
        return f"the differential tests need the simulated backend: {e}"
    return None


def require_both() -> None:
    why = unavailable_reason()
    if why:
        pytest.skip(why)
    for name in BACKENDS:
        if name not in _warm:
            warm_up(name)
            _warm.add(name)


def warm_up(backend: str) -> None:
    """One tiny guest per backend, so the simulator's CPU core is compiled (a cold numba
    cache takes minutes) before anything with a short watchdog runs."""
    from kvmlab import asm
    from kvmlab.vmm import Machine
    kw = {"kvm": kvmlab.open("sim", vendor=sim_vendor())} if backend == "sim" else {"backend": "hw"}
    with Machine(mode="real", **kw) as m:
        m.load(asm.assemble(".code16\n_start: out 0x80, al\nhlt\n", base=0x1000))
        m.run(timeout=900)


_FLAVOUR = None


def host_flavour() -> str:
    """"pvm", "intel", "amd" or "unknown": the KVM vendor module behind /dev/kvm."""
    global _FLAVOUR
    if _FLAVOUR is None:
        _FLAVOUR = "unknown"
        for mod, name in (("kvm_pvm", "pvm"), ("kvm_intel", "intel"), ("kvm_amd", "amd")):
            if os.path.isdir(f"/sys/module/{mod}"):
                _FLAVOUR = name
                break
        else:
            try:
                with open("/proc/kallsyms") as f:
                    if any(" pvm_emulate_one" in line for line in f):
                        _FLAVOUR = "pvm"
            except OSError:
                pass
    return _FLAVOUR


def is_pvm() -> bool:
    return host_flavour() == "pvm"


def sim_vendor() -> str:
    """The simulated kvm_x86_ops flavour that should behave like this host's /dev/kvm."""
    return "amd" if host_flavour() == "amd" else "intel"


def open_backend(name: str):
    return kvmlab.open("sim", vendor=sim_vendor()) if name == "sim" else kvmlab.open("hw")


def diff(hw, sim, path: str = "") -> list[str]:
    """Readable differences between two nested values (dicts, lists, scalars)."""
    out: list[str] = []
    if isinstance(hw, dict) and isinstance(sim, dict):
        for k in list(hw) + [k for k in sim if k not in hw]:
            if k not in sim or k not in hw:
                out.append(f"{path}.{k}: hw={hw.get(k, '<absent>')!r} sim={sim.get(k, '<absent>')!r}")
            else:
                out += diff(hw[k], sim[k], f"{path}.{k}")
    elif isinstance(hw, (list, tuple)) and isinstance(sim, (list, tuple)):
        for i, (a, b) in enumerate(zip(hw, sim)):
            out += diff(a, b, f"{path}[{i}]")
        if len(hw) != len(sim):
            out.append(f"{path}: hw has {len(hw)} items, sim {len(sim)}")
    elif hw != sim:
        fmt = (lambda v: f"{v:#x}") if isinstance(hw, int) and isinstance(sim, int) and not isinstance(hw, bool) \
            else repr
        out.append(f"{path}: hw={fmt(hw)} sim={fmt(sim)}")
    return out


def explain(label: str, lines: list[str], limit: int = 25) -> str:
    more = f"\n  ... {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{label}: sim differs from hw in {len(lines)} place(s):\n  " + "\n  ".join(lines[:limit]) + more
