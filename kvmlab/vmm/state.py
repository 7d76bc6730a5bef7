"""vCPU state as plain dicts (for RunResult, JSON and tests).

>>> from kvmlab import uapi
>>> regs_dict(uapi.kvm_regs(rip=0x1000, rflags=2))["rip"]
4096
"""
from __future__ import annotations

REG_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15", "rip", "rflags")
SEG_NAMES = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")
SEG_FIELDS = ("base", "limit", "selector", "type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable")
CONTROL = ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")


def regs_dict(regs) -> dict:
    """``kvm_regs`` -> ``{"rax": ..., ..., "rip": ..., "rflags": ...}``."""
    return {n: int(getattr(regs, n)) for n in REG_NAMES}


def sregs_dict(sregs) -> dict:
    """``kvm_sregs`` -> segments as dicts, ``gdt``/``idt`` as ``{base, limit}``, control
    registers, ``apic_base`` and ``interrupt_bitmap`` (4 ints)."""
    out: dict = {}
    for n in SEG_NAMES:
        seg = getattr(sregs, n)
        out[n] = {f: int(getattr(seg, f)) for f in SEG_FIELDS}
    for n in ("gdt", "idt"):
        t = getattr(sregs, n)
        out[n] = {"base": int(t.base), "limit": int(t.limit)}
    for n in CONTROL:
        out[n] = int(getattr(sregs, n))
    out["interrupt_bitmap"] = [int(x) for x in sregs.interrupt_bitmap]
    return out
