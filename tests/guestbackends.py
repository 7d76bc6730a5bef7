"""Which backends the guest-running tests use, and the skip rules they share.

``KVMLAB_GUEST_BACKENDS`` (default ``"hw,sim"``) chooses them; hw is skipped with
:func:`kvmlab.hw.unusable_reason`, sim while ``kvmlab.open("sim")`` raises
:class:`kvmlab.BackendUnavailable` (the same rules as the facts suite)."""
from __future__ import annotations

import os

import pytest

import kvmlab

BACKENDS = ("hw", "sim")


def selected() -> list[str]:
    raw = os.environ.get("KVMLAB_GUEST_BACKENDS", "hw,sim")
    return [b.strip() for b in raw.split(",") if b.strip()]


def require(name: str) -> str:
    """Skip the calling test unless backend ``name`` is selected and usable; warm it up."""
    if name not in selected():
        pytest.skip(f"backend {name!r} is not in KVMLAB_GUEST_BACKENDS={os.environ.get('KVMLAB_GUEST_BACKENDS')!r}")
    if name == "hw":
        from kvmlab.hw import unusable_reason
        why = unusable_reason()
        if why:
            pytest.skip(why)
    try:
        kvmlab.open(name).close()
    except kvmlab.BackendUnavailable as e:
        pytest.skip(str(e))
    warm_up(name)
    return name


def warm_up(name: str) -> None:
    """Run one tiny guest first, so a cold JIT cache (sim) is compiled before any test
    that measures time."""
    from kvmlab import asm
    from kvmlab.vmm import Machine
    with Machine(mode="real", backend=name) as m:
        m.load(asm.assemble(".code16\n_start: hlt\n", base=0x1000))
        m.run(timeout=600)
