"""The page-table walk of one virtual address, level by level: the bit split (4-level, and
how 32-bit and PAE paging would split it), each entry with its flags (P R/W U/S PWT PCD
A D PS G NX), the guest-physical result or the #PF, the second stage (GPA -> memslot +
offset), a cross-check with KVM_TRANSLATE, and the whole address-space map.  The walking
itself is :mod:`kvmlab.vmm.pagewalk`.

>>> from kvmlab.vmm import Machine
>>> m = Machine.from_file("guests/hello64.S", backend="auto")
>>> pw = PageWalk(m, va=0x1234)
>>> print("\\n".join(pw.text().splitlines()[:7]))
page walk of 0x1234
walk 0x1234 (read, supervisor), paging: 4-level, CR3 0x10000
  PML4[47:39]=0x0 | PDPT[38:30]=0x0 | PD[29:21]=0x0 | offset[20:0]=0x1234
  PML4E [  0] @ 0x10000 = 0x0000000000011003  P R/W                  -> table 0x11000
  PDPTE [  0] @ 0x11000 = 0x0000000000012003  P R/W                  -> table 0x12000
  PDE   [  0] @ 0x12000 = 0x0000000000000083  P R/W PS               -> page 0x0 (2M)
  -> GPA 0x1234 (2M page, rwx kernel)
>>> pw.translation_text()
'KVM_TRANSLATE: 0x1234 -> 0x1234 (agrees with the walk)'
>>> m.close()
"""
from __future__ import annotations

from ..vmm import pagewalk as walker
from . import html
from ._base import View, resolve, vcpu_idle

MAP_ROWS = 24


class PageWalk(View):
    """``PageWalk(machine_or_vcpu, va=None, follow=None, access="read", level=None,
    show_map=True)``.  ``follow`` is "rip" (the next instruction), "cr2" (the last faulting
    address) or None (the fixed ``va``; default "rip" when no ``va`` is given).  ``level``
    shows only the first levels of the walk (step through it one level at a time)."""

    uses_vcpu = True

    def __init__(self, obj, va: int | None = None, follow: str | None = None, access: str = "read",
                 level: int | None = None, show_map: bool = True):
        machine, vm, v = resolve(obj)
        super().__init__(machine)
        if follow not in (None, "rip", "cr2"):
            raise ValueError("follow must be 'rip', 'cr2' or None")
        self.vm, self.vcpu = vm, v
        self.va = va
        self.follow = follow or ("rip" if va is None else None)
        self.access = access
        self.level = level
        self.show_map = show_map
        self.walk = None
        self.translation = None
        self.map: list = []
        self.capture()

    def capture(self) -> None:
        if not vcpu_idle(self.vcpu):
            return
        s = self.vcpu.get_sregs()
        if self.follow == "rip":
            bits64 = s.cs.l and s.efer & (1 << 10)
            self.va = (0 if bits64 else s.cs.base) + int(self.vcpu.get_regs().rip)
        elif self.follow == "cr2":
            self.va = int(s.cr2)
        cpu = {"gbpages": walker.guest_has_gbpages(self.vcpu), "maxphyaddr": walker.guest_maxphyaddr(self.vcpu)}
        self.walk = walker.walk(self.vm, self.va, cr0=s.cr0, cr3=s.cr3, cr4=s.cr4, efer=s.efer,
                                access=self.access, **cpu)
        self.translation = self.vcpu.translate(self.va)
        self.map = walker.address_space_map(self.vm, cr0=s.cr0, cr3=s.cr3, cr4=s.cr4, efer=s.efer,
                                            **cpu) if self.show_map else []

    def goto(self, va: int | None = None, follow: str | None = None, access: str | None = None) -> "PageWalk":
        """Walk another address (or follow "rip" / "cr2"); returns the view."""
        self.follow = follow
        if va is not None:
            self.va = va
        if access is not None:
            self.access = access
        self.capture()
        self.show()
        return self

    # -------------------------------------------------------------- text
    def translation_text(self) -> str:
        t, w = self.translation, self.walk
        if t is None or w is None:
            return "KVM_TRANSLATE: not read yet"
        kvm = f"{t.physical_address:#x}" if t.valid else "not mapped"
        if w.ok and t.valid:
            verdict = "agrees with the walk" if w.gpa == t.physical_address else f"DIFFERS from the walk's {w.gpa:#x}"
        elif not w.ok and not t.valid:
            verdict = "agrees: no translation"
        else:
            verdict = "DIFFERS from the walk" + ("" if w.ok else " (the walk faulted)")
        return f"KVM_TRANSLATE: {self.va:#x} -> {kvm} ({verdict})"

    def splits_text(self) -> list[str]:
        out = ["how each paging mode splits this address:"]
        for mode in ("32-bit", "PAE", "4-level"):
            va = self.va & 0xFFFFFFFF if mode != "4-level" else self.va
            parts = " | ".join(f"{n}[{hi}:{lo}]={v:#x}" for n, hi, lo, v in walker.split(va, mode))
            out.append(f"  {mode:8} {parts}")
        return out

    def walk_lines(self) -> list[str]:
        lines = str(self.walk).splitlines()
        if self.level is None or self.walk.mode == "none":
            return lines
        n = len(self.walk.levels)
        k = max(0, min(self.level, n))
        head, levels, tail = lines[:2], lines[2:2 + n], lines[2 + n:]
        shown = head + levels[:k]
        if k < n:
            shown.append(f"  ... step {k} of {n}: next the {self.walk.levels[k].name}")
        else:
            shown += tail
        return shown

    def text(self) -> str:
        if self.walk is None:
            return "page walk: the vCPU is running; it is shown at the next exit"
        how = {"rip": " (following RIP)", "cr2": " (following CR2, the last page-fault address)"}.get(self.follow, "")
        out = [f"page walk of {self.va:#x}{how}"] + self.walk_lines() + [self.translation_text()]
        if self.walk.mode != "none":
            out += self.splits_text()
        if self.show_map:
            out.append(f"address space ({len(self.map)} mapped ranges):" if self.walk.mode != "none"
                       else "address space: paging is off (linear = physical)")
            out += ["  " + str(r) for r in self.map[:MAP_ROWS]]
            if len(self.map) > MAP_ROWS:
                out.append(f"  ... {len(self.map) - MAP_ROWS} more")
        return "\n".join(out)

    # -------------------------------------------------------------- widget
    def _build(self):
        import ipywidgets as W
        self._follow = W.ToggleButtons(options=[("RIP", "rip"), ("CR2", "cr2"), ("address", None)],
                                       value=self.follow)
        self._va = W.Text(value=f"{self.va:#x}" if self.va is not None else "", description="VA",
                          continuous_update=False, layout=W.Layout(width="20em"))
        self._access = W.Dropdown(options=["read", "write", "fetch"], value=self.access, description="access")
        self._level = W.IntSlider(min=0, max=5, value=5 if self.level is None else self.level,
                                  description="levels")
        self._out = W.HTML()

        def changed(_):
            try:
                va = int(self._va.value, 0) if self._follow.value is None and self._va.value else None
            except ValueError:
                return
            n = len(self.walk.levels) if self.walk else 5
            self.level = None if self._level.value >= n else self._level.value
            self.goto(va, self._follow.value, self._access.value)
        for w in (self._follow, self._va, self._access, self._level):
            w.observe(changed, "value")
        return W.VBox([W.HBox([self._follow, self._va, self._access]), self._level, self._out])

    def _update(self) -> None:
        text = html.esc(self.text())
        for flag in (" A ", " D "):            # the accessed / dirty bits stand out
            text = text.replace(flag, " " + html.mark(flag.strip(), "#9be89b") + " ")
        text = text.replace("fault:", html.mark("fault:", "#ffb3b3"))
        self._out.value = html.pre(text, raw=True)
        if self.walk is not None and self._va.value != f"{self.va:#x}":
            self._va.value = f"{self.va:#x}" if self._follow.value is not None else self._va.value
