"""Registers of a vCPU with change highlighting.

>>> from kvmlab import asm
>>> from kvmlab.vmm import Machine
>>> m = Machine(mode="real", backend="auto")
>>> m.load(asm.assemble(".code16\\n_start: mov ax, 0x1234\\n hlt", base=0x1000))
>>> regs = Registers(m)              # captures now
>>> _ = m.run()
>>> print(str(regs.refresh()).splitlines()[1])
rax 0x0000000000001234*  rbx 0x0000000000000000   rcx 0x0000000000000000
>>> regs.changed
['rax', 'rip']
>>> m.close()
"""
from __future__ import annotations

from ..vmm.state import REG_NAMES
from . import html
from ._base import View, resolve, vcpu_idle

RFLAGS = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF"))
CR0 = ((0, "PE"), (1, "MP"), (2, "EM"), (3, "TS"), (4, "ET"), (5, "NE"), (16, "WP"), (18, "AM"),
       (29, "NW"), (30, "CD"), (31, "PG"))
CR4 = ((0, "VME"), (1, "PVI"), (3, "DE"), (4, "PSE"), (5, "PAE"), (7, "PGE"), (9, "OSFXSR"),
       (12, "LA57"), (20, "SMEP"), (21, "SMAP"))
EFER = ((0, "SCE"), (8, "LME"), (10, "LMA"), (11, "NXE"))
SEGS = ("cs", "ds", "es", "fs", "gs", "ss", "tr")
CONTROL = ("cr0", "cr2", "cr3", "cr4", "efer")
BITS = {"rflags": RFLAGS, "cr0": CR0, "cr4": CR4, "efer": EFER}


def flag_names(value: int, bits) -> str:
    """``"[PE ET PG]"`` for the bits set in ``value``."""
    return "[" + " ".join(n for b, n in bits if value >> b & 1) + "]"


def snapshot(vcpu, sregs: bool = True) -> dict:
    """Register name -> value (segments as ``cs.sel`` / ``cs.base``), from the vCPU."""
    r = vcpu.get_regs()
    out = {n: int(getattr(r, n)) for n in REG_NAMES}
    if sregs:
        s = vcpu.get_sregs()
        for n in SEGS:
            seg = getattr(s, n)
            out[f"{n}.sel"], out[f"{n}.base"], out[f"{n}.limit"] = int(seg.selector), int(seg.base), int(seg.limit)
        for n in CONTROL:
            out[n] = int(getattr(s, n))
        out["gdt.base"], out["gdt.limit"] = int(s.gdt.base), int(s.gdt.limit)
        out["idt.base"], out["idt.limit"] = int(s.idt.base), int(s.idt.limit)
    return out


class Registers(View):
    """General, segment and control registers; what changed between the last two captures
    is highlighted (``*`` in the text form).  ``Registers(machine_or_vcpu, vcpu=0, sregs=True)``."""

    uses_vcpu = True

    def __init__(self, obj, vcpu: int = 0, sregs: bool = True):
        machine, _, v = resolve(obj, vcpu)
        super().__init__(machine, vcpu)
        self.vcpu = v
        self.sregs = sregs
        self.values: dict = {}
        self.previous: dict = {}
        if vcpu_idle(v):
            self.capture()
            self.previous = dict(self.values)

    def capture(self) -> None:
        if not vcpu_idle(self.vcpu):
            return
        new = snapshot(self.vcpu, self.sregs)
        if new != self.values:
            self.previous, self.values = self.values or new, new

    @property
    def changed(self) -> list[str]:
        return [k for k, v in self.values.items() if self.previous.get(k, v) != v]

    def _lines(self, fmt) -> list[str]:
        v, ch = self.values, set(self.changed)
        if not v:
            return ["(no registers captured yet)"]

        def cell(name, label=None, width=18):
            val = v[name]
            s = f"{label or name:<3} {val:#0{width}x}"
            extra = (" " + flag_names(val, BITS[name])) if name in BITS else ""
            return fmt(s, name in ch) + extra
        rows = []
        gp = [n for n in REG_NAMES if n not in ("rip", "rflags")]
        for i in range(0, len(gp), 3):
            rows.append("  ".join(cell(n) for n in gp[i:i + 3]))
        rows.append(cell("rip") + "  " + cell("rflags"))
        if self.sregs:
            for i in range(0, len(SEGS), 2):
                rows.append("   ".join(fmt(f"{n} {v[n + '.sel']:#06x} base {v[n + '.base']:#x} limit {v[n + '.limit']:#x}",
                                           any(f"{n}.{f}" in ch for f in ("sel", "base", "limit")))
                                       for n in SEGS[i:i + 2]))
            rows.append(fmt(f"gdt {v['gdt.base']:#x}/{v['gdt.limit']:#x}  idt {v['idt.base']:#x}/{v['idt.limit']:#x}",
                            bool({"gdt.base", "gdt.limit", "idt.base", "idt.limit"} & ch)))
            rows.append("  ".join(cell(n, width=10) for n in ("cr0", "cr2", "cr3")))
            rows.append("  ".join(cell(n, width=10) for n in ("cr4", "efer")))
        return [r.rstrip() for r in rows]

    def text(self) -> str:
        head = f"vCPU {self.vcpu_index} registers (* = changed by the last run)"
        return "\n".join([head] + self._lines(lambda s, c: s + ("*" if c else " ")))

    def _update(self) -> None:
        head = html.esc(f"vCPU {self.vcpu_index} registers (highlighted: changed by the last run)")
        body = self._lines(lambda s, c: (html.mark(s) if c else html.esc(s)) + " ")
        self._widget.value = html.pre("\n".join([head] + body), raw=True)
